"""The one progress display: a bar with an ETA on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from lenet_edge.cli import cli
from lenet_edge.progress import ProgressDisplay
from tests.idx_files import write_mnist_dir
from tests.runtime_models import band_model


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_with_an_eta():
    screen = Terminal()
    with ProgressDisplay("evaluate", file=screen) as progress:
        for done in (1, 2, 3):
            progress(done, 3, f"batch {done}")
    text = screen.getvalue()
    assert "evaluate" in text and "3/3" in text and "batch 3" in text
    assert "\r" in text  # redrawn in place, not one line per update


def test_elsewhere_each_update_is_a_plain_line():
    log = io.StringIO()
    with ProgressDisplay("bench", file=log) as progress:
        progress(1, 2, "batch 1, 1 thread(s)")
        progress(2, 2, "done")
    assert log.getvalue() == "bench: 1/2 batch 1, 1 thread(s)\nbench: 2/2 done\n"


def test_a_long_first_step_is_announced_when_asked():
    log = io.StringIO()
    with ProgressDisplay("training lenet5-modern", file=log, announce=True) as progress:
        assert log.getvalue() == "training lenet5-modern ...\n"  # before the first epoch ends
        progress(1, 8, "epoch 1")
    assert log.getvalue().splitlines()[-1] == "training lenet5-modern: 1/8 epoch 1"


def test_evaluate_reports_its_progress_in_plain_lines(runner, tmp_path):
    model = band_model(tmp_path / "band.onnx")
    data_dir = write_mnist_dir(tmp_path / "mnist", train=10, test=60)
    result = runner.invoke(cli, ["evaluate", str(model), "--data-dir", str(data_dir), "--batch-size", "25"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"evaluate: {n}/60 test images" for n in (25, 50, 60)]
