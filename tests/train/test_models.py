"""The three LeNet-5 variants: shapes, the paper's parameter and connection counts, C3's
connection table, the textbook variant's tanh and average pooling, and `lenet-edge summary`
(hermetic: random-weight models)."""

from __future__ import annotations

import pytest
import torch

from lenet_edge.cli import cli
from lenet_edge.errors import ModelError
from lenet_edge.mnist import CLASSIC_PREPROCESSING, MODERN_PREPROCESSING
from lenet_edge.train.models import LAYERS, build_model, squash
from lenet_edge.train.summary import format_summary, summarize

# LeCun et al. 1998, section II.B: trainable parameters and connections per layer. The
# output layer is 84 x 10 RBF weights; its connections are one per weight.
LENET5_COUNTS = {
    #         output shape     params  connections
    "C1": ([6, 28, 28], 156, 122_304),
    "S2": ([6, 14, 14], 12, 5_880),
    "C3": ([16, 10, 10], 1_516, 151_600),
    "S4": ([16, 5, 5], 32, 2_000),
    "C5": ([120, 1, 1], 48_120, 48_120),
    "F6": ([84], 10_164, 10_164),
    "OUTPUT": ([10], 840, 840),
}
# The modern form: dense C3 (6*16*25 + 16), parameter-free max-pooling (4 inputs per
# unit), a linear output layer with biases (84*10 + 10).
MODERN_COUNTS = {
    "C1": ([6, 28, 28], 156, 122_304),
    "S2": ([6, 14, 14], 0, 4_704),
    "C3": ([16, 10, 10], 2_416, 241_600),
    "S4": ([16, 5, 5], 0, 1_600),
    "C5": ([120, 1, 1], 48_120, 48_120),
    "F6": ([84], 10_164, 10_164),
    "OUTPUT": ([10], 850, 850),
}
# The tutorials' textbook form has the same counts as the modern one: dense C3, parameter-free 2x2
# average pooling (4 inputs per unit), a linear output with biases. 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
TANH_COUNTS = MODERN_COUNTS
EXPECTED = {"lenet5": LENET5_COUNTS, "lenet5-modern": MODERN_COUNTS, "lenet5-tanh": TANH_COUNTS}

# The paper's Table I, verbatim: rows are the 6 S2 maps, columns the 16 C3 maps, X where
# the C3 map reads the S2 map.
PAPER_TABLE_I = """
X . . . X X X . . X X X X . X X
X X . . . X X X . . X X X X . X
X X X . . . X X X . . X . X X X
. X X X . . X X X X . . X . X X
. . X X X . . X X X X . X X . X
. . . X X X . . X X X X . X X X
"""
CONNECTED = [[cell == "X" for cell in row.split()] for row in PAPER_TABLE_I.strip().splitlines()]  # [s2][c3]


@pytest.fixture(params=list(EXPECTED))
def variant(request) -> str:
    return request.param


def _model(variant: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(variant).eval()


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_output_is_batch_by_ten_logits(variant, batch):
    model = _model(variant)
    with torch.no_grad():
        out = model(torch.randn(batch, 1, 32, 32))
    assert out.shape == (batch, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_each_sample_is_computed_independently_of_its_batch(variant):
    model = _model(variant)
    x = torch.randn(7, 1, 32, 32)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(7)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(together[0], together[1])  # the logits do depend on the input


def test_per_layer_shapes_parameters_and_connections(variant):
    rows = summarize(_model(variant))
    assert [r["layer"] for r in rows] == list(LAYERS)
    found = {r["layer"]: (r["output_shape"], r["parameters"], r["connections"]) for r in rows}
    assert found == EXPECTED[variant]


def test_trainable_parameter_totals():
    totals = {v: sum(p.numel() for p in _model(v).parameters() if p.requires_grad) for v in EXPECTED}
    assert totals == {"lenet5": 60_840, "lenet5-modern": 61_706, "lenet5-tanh": 61_706}
    assert sum(c[2] for c in LENET5_COUNTS.values()) == 340_908


def test_every_parameter_belongs_to_a_named_layer(variant):
    """The per-layer counts add up to the whole model: nothing trainable hides outside C1..OUTPUT."""
    model = _model(variant)
    per_layer = sum(r["parameters"] for r in summarize(model))
    assert per_layer == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_c3_reads_exactly_the_s2_maps_of_table_i():
    """Perturbing an S2 map changes exactly the C3 maps that Table I connects to it."""
    c3 = _model("lenet5").C3
    s2 = torch.rand(2, 6, 14, 14) * 2 - 1  # squashed S2 outputs lie in (-1.7, 1.7)
    with torch.no_grad():
        base = c3(s2)  # (2, 16, 10, 10)
        for s2_map in range(6):
            perturbed = s2.clone()
            perturbed[:, s2_map] += torch.randn(2, 14, 14)
            changed = (c3(perturbed) - base).abs().amax(dim=(0, 2, 3)) > 1e-6  # (16,)
            assert changed.tolist() == CONNECTED[s2_map], f"S2 map {s2_map}"


def test_c3_has_one_weight_per_connection_of_table_i():
    c3 = _model("lenet5").C3
    with torch.no_grad():
        kernel_used = c3.kernel().abs().sum(dim=(2, 3)) > 0  # (16 C3 maps, 6 S2 maps)
    assert kernel_used.t().tolist() == CONNECTED
    assert sum(map(sum, CONNECTED)) * 25 + 16 == 1_516


def test_c3_unconnected_taps_stay_zero_after_training_steps():
    model = _model("lenet5").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert ((model.C3.kernel().abs().sum(dim=(2, 3)) > 0).t().tolist()) == CONNECTED


def test_tanh_variant_squashes_with_plain_tanh_and_averages_2x2_blocks():
    """Each activation is tanh of the layer's affine map, and S2/S4 are the means of 2x2 blocks
    taken with stride 2 (not their maximum, not the paper's scaled sums)."""
    model = _model("lenet5-tanh")
    x = torch.randn(3, 1, 32, 32) * 3  # large inputs reach tanh's saturation
    with torch.no_grad():
        c1 = model.C1(x)  # (3, 6, 28, 28)
        s2 = model.S2(c1)  # (3, 6, 14, 14)
        c3 = model.C3(s2)  # (3, 16, 10, 10)
        s4 = model.S4(c3)  # (3, 16, 5, 5)
        f6 = model.F6(model.C5(s4).flatten(1))  # (3, 84)
        conv1 = model.C1[0]
        torch.testing.assert_close(c1, torch.tanh(torch.nn.functional.conv2d(x, conv1.weight, conv1.bias)))
        torch.testing.assert_close(s2, c1.unflatten(3, (14, 2)).unflatten(2, (14, 2)).mean(dim=(3, 5)))
        torch.testing.assert_close(s4, c3.unflatten(3, (5, 2)).unflatten(2, (5, 2)).mean(dim=(3, 5)))
        fc6 = model.F6[0]
        torch.testing.assert_close(f6, torch.tanh(model.C5(s4).flatten(1) @ fc6.weight.t() + fc6.bias))
        assert c1.abs().max() < 1 and c1.abs().max() > 0.99  # saturates towards ±1, never the paper's 1.7159
        logits = model.OUTPUT(f6)  # (3, 10): linear, not squashed
    torch.testing.assert_close(model(x), logits)


def test_tanh_variant_c3_reads_all_six_s2_maps():
    """Perturbing any S2 map changes every C3 map: the dense C3 of the tutorials, not Table I."""
    c3 = _model("lenet5-tanh").C3
    s2 = torch.rand(2, 6, 14, 14) * 2 - 1  # average-pooled tanh outputs lie in (-1, 1)
    with torch.no_grad():
        base = c3(s2)  # (2, 16, 10, 10)
        for s2_map in range(6):
            perturbed = s2.clone()
            perturbed[:, s2_map] += torch.randn(2, 14, 14)
            changed = (c3(perturbed) - base).abs().amax(dim=(0, 2, 3)) > 1e-6  # (16,)
            assert changed.all(), f"S2 map {s2_map}"


def test_the_paper_sigmoid_maps_plus_minus_one_to_itself():
    out = squash(torch.tensor([-1.0, 0.0, 1.0, 100.0]))
    torch.testing.assert_close(out, torch.tensor([-1.0, 0.0, 1.0, 1.7159]), rtol=0, atol=2e-4)


def test_variants_carry_their_preprocessing():
    assert build_model("lenet5").preprocessing == CLASSIC_PREPROCESSING
    assert build_model("lenet5-modern").preprocessing == MODERN_PREPROCESSING
    assert build_model("lenet5-tanh").preprocessing == MODERN_PREPROCESSING
    for name in EXPECTED:
        assert build_model(name).variant == name


def test_same_seed_same_initial_weights(variant):
    a, b, c = _model(variant, 1), _model(variant, 1), _model(variant, 2)
    for name, tensor in a.state_dict().items():
        torch.testing.assert_close(tensor, b.state_dict()[name], rtol=0, atol=0)
    assert any(not torch.equal(t, c.state_dict()[n]) for n, t in a.state_dict().items())


def test_unknown_variant_is_a_model_error():
    expected = r"unknown variant 'lenet6' \(expected one of lenet5, lenet5-modern, lenet5-tanh\)"
    with pytest.raises(ModelError, match=expected):
        build_model("lenet6")


# --- lenet-edge summary --------------------------------------------------------------------


def _parse_summary(text: str) -> dict:
    rows = {}
    for line in text.splitlines()[2:]:
        name, *cells = line.split()
        numbers = [int(c.replace(",", "")) for c in cells[-2:]]
        shape = [int(d) for d in cells[0].split("x")] if len(cells) == 3 else None
        rows[name] = (shape, *numbers)
    return rows


@pytest.mark.parametrize("name", list(EXPECTED))
def test_summary_command_prints_the_table(runner, name):
    result = runner.invoke(cli, ["summary", "--variant", name])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == name
    assert lines[1].split() == ["layer", "output", "parameters", "connections"]
    rows = _parse_summary(result.output)
    expected = EXPECTED[name]
    assert {k: v for k, v in rows.items() if k != "total"} == {k: tuple(v) for k, v in expected.items()}
    assert rows["total"] == (None, sum(v[1] for v in expected.values()), sum(v[2] for v in expected.values()))


def test_summary_defaults_to_the_modern_variant_and_matches_format_summary(runner):
    result = runner.invoke(cli, ["summary"])
    assert result.exit_code == 0
    assert result.output == format_summary("lenet5-modern", summarize(build_model("lenet5-modern"))) + "\n"
    assert "61,706" in result.output


def test_summary_of_lenet5_reports_the_paper_totals(runner):
    result = runner.invoke(cli, ["summary", "--variant", "lenet5"])
    assert result.output.splitlines()[-1].split() == ["total", "60,840", "340,908"]


def test_summary_refuses_an_unknown_variant_as_usage_error(runner):
    result = runner.invoke(cli, ["summary", "--variant", "lenet6"])
    assert result.exit_code == 2
    assert "lenet6" in result.stderr


def test_the_cli_offers_exactly_the_variants_the_models_build():
    from lenet_edge.defaults import DEFAULT_VARIANT, VARIANT_NAMES
    from lenet_edge.train.models import VARIANTS

    assert set(VARIANT_NAMES) == set(VARIANTS) and DEFAULT_VARIANT in VARIANTS
