"""quantize --auto: the exact kernel-friendly rewrite, the candidate search, its winner and its table.

Hermetic tests build ReLU/max-pool and tanh/average-pool LeNet-5s by hand (and export the classic one)
with random weights; integration tests run the search on the really trained models, all of which take
the rewrite. Latencies are measured but never asserted: which figures the table holds is checked, not
how fast anything ran.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from lenet_edge.cli import cli
from lenet_edge.contract import INPUT_NAME, OUTPUT_NAME, PREFIX, ModelContract
from lenet_edge.errors import DataError, ValidationError
from lenet_edge.graph import load, metadata
from lenet_edge.mnist import MODERN_PREPROCESSING, load_mnist
from lenet_edge.quantize import search
from lenet_edge.quantize.checks import check_structure, optimized_op_counts
from lenet_edge.quantize.rewrite import (
    EXACT_ATOL,
    EXACT_RTOL,
    NotRewritable,
    float_logits,
    kernel_friendly,
    verify_rewrite,
)
from lenet_edge.quantize.search import TimingPlan, Trial, auto_quantize, choose, side_by_side
from lenet_edge.quantize.settings import QuantizationRecord, QuantSettings, candidate_recipes
from lenet_edge.quantize.stage import build_candidate, model_inputs, preprocess
from lenet_edge.runtime.session import load_model

from ..idx_files import write_mnist_dir

QUICK = TimingPlan(rounds=3, seconds_per_turn=0.005, warmup=2)  # the table's figures, not a benchmark
CELLS = ["1t_b1", "1t_b64", "2t_b1", "2t_b64"]
CANDIDATES = ["standard", "standard+c1-float", "kernel-friendly", "kernel-friendly+per-channel",
              "kernel-friendly+qoperator"]
FLOAT_LAYERS = ("Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul")


# ---------------------------------------------------------------- a hand-built ReLU/max-pool LeNet-5
def relu_lenet(path: Path, seed: int = 0, *, c1_activation: str | None = None, activation: str = "Relu",
               pool: str = "MaxPool") -> Path:
    """image (N,1,32,32) -> C1 5x5 (6) -> act -> pool -> C3 5x5 (16) -> act -> pool -> C5 5x5 (120) -> act
    -> reshape (N,120) -> F6 (84) -> act -> OUTPUT (10): the structure torch exports for lenet5-modern
    (Relu, MaxPool) and lenet5-tanh (Tanh, AveragePool); `c1_activation` replaces C1's alone."""
    rng = np.random.default_rng(seed)
    shapes = {"C1.w": (6, 1, 5, 5), "C1.b": (6,), "C3.w": (16, 6, 5, 5), "C3.b": (16,), "C5.w": (120, 16, 5, 5),
              "C5.b": (120,), "F6.w": (84, 120), "F6.b": (84,), "OUT.w": (10, 84), "OUT.b": (10,)}
    weights = [numpy_helper.from_array(rng.normal(0, 0.3 if name.endswith(".w") else 0.1, shape).astype(np.float32),
                                       name) for name, shape in shapes.items()]
    weights.append(numpy_helper.from_array(np.array([-1, 120], np.int64), "flat_shape"))
    window = dict(kernel_shape=[2, 2], strides=[2, 2])
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "C1.w", "C1.b"], ["c1"], name="c1"),  # (N, 6, 28, 28)
        helper.make_node(c1_activation or activation, ["c1"], ["a1"], name="a1"),
        helper.make_node(pool, ["a1"], ["s2"], name="s2", **window),  # (N, 6, 14, 14)
        helper.make_node("Conv", ["s2", "C3.w", "C3.b"], ["c3"], name="c3"),
        helper.make_node(activation, ["c3"], ["a3"], name="a3"),
        helper.make_node(pool, ["a3"], ["s4"], name="s4", **window),  # (N, 16, 5, 5)
        helper.make_node("Conv", ["s4", "C5.w", "C5.b"], ["c5"], name="c5"),
        helper.make_node(activation, ["c5"], ["a5"], name="a5"),  # (N, 120, 1, 1)
        helper.make_node("Reshape", ["a5", "flat_shape"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "F6.w", "F6.b"], ["f6"], name="f6", transB=1),
        helper.make_node(activation, ["f6"], ["a6"], name="a6"),
        helper.make_node("Gemm", ["a6", "OUT.w", "OUT.b"], [OUTPUT_NAME], name="out", transB=1),
    ]
    graph = helper.make_graph(nodes, "relu_lenet",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, 32, 32])],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)
    helper.set_model_props(model, ModelContract("lenet5-modern", MODERN_PREPROCESSING).to_metadata())
    onnx.save(model, str(path))
    return path


def random_inputs(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (count, 1, 32, 32)).astype(np.float32)  # (N, 1, 32, 32)


def logits(path: Path, x: np.ndarray) -> np.ndarray:
    return load_model(path).predict(x)  # (N, 10) in onnxruntime


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


# ---------------------------------------------------------------- hermetic: the rewrite
def test_rewrite_computes_the_same_function_with_kernel_friendly_shapes(tmp_path):
    original = relu_lenet(tmp_path / "lenet.onnx")
    model, applied = kernel_friendly(onnx.load(str(original)), "lenet.onnx")
    assert applied == ["c1-relu-max-pool-as-4-column-conv", "c3-over-column-pairs", "c5-as-nhwc-gemm"]
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(model, str(rewritten))
    x = random_inputs(64)
    expected, found = logits(original, x), logits(rewritten, x)
    assert np.abs(expected - found).max() <= EXACT_ATOL + EXACT_RTOL * np.abs(expected).max()  # ~1e-6 relative
    assert (expected.argmax(1) == found.argmax(1)).all()
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    assert weights["C1.w"] == (64, 4, 6, 2)  # 4 pixel columns in, 2x2 pool phases x 2 pool windows x 8 maps out
    assert weights["C3.w"] == (32, 16, 5, 3)  # column pairs: 2 x 8 maps in, 2 x 16 maps out
    assert weights["C5.w"] == (120, 400)  # C5 as a Gemm over the NHWC-flattened 5x5x16 map
    ops = op_counts(model)
    assert (ops["Conv"], ops["Gemm"], ops["MaxPool"], ops["Relu"]) == (2, 3, 2, 4)
    # image -> column groups; C1 -> pool view; pooled -> C3's column pairs in one view; C3 -> its NHWC map
    assert ops["Reshape"] == 4 and ops["Flatten"] == 1
    result = verify_rewrite(original, rewritten, x, "lenet.onnx")
    assert result["images"] == 64 and result["argmax_mismatches"] == 0
    assert result["max_abs_diff"] <= result["tolerance"] < 1e-3


def test_tanh_average_pool_lenet_is_rewritten_exactly_into_sigmoids_and_averaging_convs(tmp_path):
    """tanh(x) = 2 sigmoid(2x) - 1 with the affine folded into the next layer, and each 2x2 average pool a conv
    of weights 1/4 over the folded channels: the same function, with no Tanh, AveragePool or map padding."""
    original = relu_lenet(tmp_path / "tanh.onnx", activation="Tanh", pool="AveragePool")
    model, applied = kernel_friendly(onnx.load(str(original)), "tanh.onnx")
    assert applied == ["tanh-as-sigmoid", "c1-sigmoid-average-pool-as-4-column-conv",
                       "c3-sigmoid-average-pool-over-column-pairs", "c5-as-nhwc-gemm"]
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(model, str(rewritten))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert weights["C1.w"].shape == (48, 4, 6, 2)  # 6 maps, not padded to 8: the averaging conv would carry them
    assert weights["fold.c1.pool.weight"].shape == (12, 48, 1, 1)  # the mean of the 4 phases of 2 windows x 6 maps
    assert weights["C3.w"].shape == (32, 12, 5, 3) and weights["fold.c3.pool.weight"].shape == (16, 32, 2, 1)
    assert (weights["fold.c1.pool.weight"].sum(axis=1) == 1).all() and (weights["fold.c3.pool.weight"] >= 0).all()
    ops = op_counts(model)
    assert (ops["Tanh"], ops["AveragePool"], ops["Sigmoid"], ops["Conv"], ops["Gemm"]) == (0, 0, 4, 4, 3)
    assert ops["Reshape"] == 1 and ops["Flatten"] == 1  # the image's view and C5's; the rest are averaging convs
    x = random_inputs(64)
    result = verify_rewrite(original, rewritten, x, "tanh.onnx")
    assert result["argmax_mismatches"] == 0 and result["max_abs_diff"] <= result["tolerance"] < 1e-3


def test_tanh_is_rewritten_only_where_its_affine_reaches_a_plain_layer(tmp_path):
    model = onnx.load(str(relu_lenet(tmp_path / "tanh.onnx", activation="Tanh", pool="AveragePool")))
    next(n for n in model.graph.node if n.name == "c3").attribute.append(helper.make_attribute("pads", [1] * 4))
    with pytest.raises(NotRewritable, match=r"^tanh.onnx: Conv c3 after Tanh a1 is padded, scaled or has no bias"):
        kernel_friendly(model, "tanh.onnx")  # zero padding in tanh's space is not zero in the sigmoid's
    original = relu_lenet(tmp_path / "squashed.onnx", activation="Tanh", pool="AveragePool")
    model = onnx.load(str(original))
    next(n for n in model.graph.node if n.name == "out").output[0] = "raw"
    model.graph.node.append(helper.make_node("Tanh", ["raw"], [OUTPUT_NAME], name="squash"))
    onnx.save(model, str(original))
    rewritten, _ = kernel_friendly(model, "squashed.onnx")  # a tanh with no layer after it stays a Tanh
    assert [n.name for n in rewritten.graph.node if n.op_type == "Tanh"] == ["squash"]
    onnx.save(rewritten, str(tmp_path / "rewritten.onnx"))
    assert verify_rewrite(original, tmp_path / "rewritten.onnx", random_inputs(16), "x")["argmax_mismatches"] == 0


def test_classic_lenet5_is_folded_into_plain_layers_then_rewritten_exactly(tmp_path):
    """The paper's network as torch exports it (random weights): 1.7159 tanh(2a/3), AveragePool -> Mul(4) ->
    Mul(coefficient) -> Add(bias), and the RBF's Mul/ReduceSum/MatMul/Sub/Add/Div fold into plain layers; the
    kernel-friendly rewrites follow, and the whole is the same function."""
    import torch

    from lenet_edge.export.exporter import DEFAULT_OPSET
    from lenet_edge.export.tracing import to_onnx
    from lenet_edge.mnist import CLASSIC_PREPROCESSING
    from lenet_edge.train.models import build_model

    torch.manual_seed(0)
    exported = to_onnx(build_model("lenet5"), DEFAULT_OPSET)
    helper.set_model_props(exported, ModelContract("lenet5", CLASSIC_PREPROCESSING).to_metadata())
    original = tmp_path / "classic.onnx"
    onnx.save(exported, str(original))
    assert op_counts(exported)["Mul"] >= 15 and op_counts(exported)["AveragePool"] == 2
    model, applied = kernel_friendly(exported, "classic.onnx")
    assert applied[:4] == ["subsampling-as-depthwise-conv", "constant-scales-and-shifts-into-layers", "rbf-as-gemm",
                           "tanh-as-sigmoid"]
    ops = op_counts(model)
    assert (ops["AveragePool"], ops["Div"], ops["Sub"], ops["MatMul"]) == (0, 0, 0, 0)
    # C1, S2, C3, S4 and C5 squash through sigmoids; F6's tanh feeds the RBF twice and stays
    assert (ops["Sigmoid"], ops["Tanh"], ops["Conv"], ops["Gemm"]) == (5, 1, 4, 3)
    assert ops["Mul"] == 2  # the RBF's x*x and its scale: every other constant is in a layer's weights
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(model, str(rewritten))
    x = CLASSIC_PREPROCESSING(np.random.default_rng(2).integers(0, 256, (64, 28, 28)).astype(np.uint8))
    result = verify_rewrite(original, rewritten, x, "classic.onnx")
    assert result["argmax_mismatches"] == 0 and result["max_abs_diff"] <= result["tolerance"]


def test_a_wrong_rewrite_is_caught_by_the_verification(tmp_path):
    original = relu_lenet(tmp_path / "lenet.onnx")
    model, _ = kernel_friendly(onnx.load(str(original)), "lenet.onnx")
    w = next(t for t in model.graph.initializer if t.name == "C3.w")
    broken = numpy_helper.to_array(w).copy()
    broken[:, :, 0, 0] += 0.5  # one kernel column misplaced by a faulty rewrite
    w.CopyFrom(numpy_helper.from_array(broken, "C3.w"))
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(model, str(rewritten))
    with pytest.raises(ValidationError, match=r"^lenet.onnx: the kernel-friendly rewrite: max abs logit difference"):
        verify_rewrite(original, rewritten, random_inputs(32), "lenet.onnx")


@pytest.mark.parametrize(("variant", "message"), [
    (dict(c1_activation="Elu"), r"conv c1 feeds Elu \(expected a single Relu, Tanh or Sigmoid\)"),
    (dict(c1_activation="Softplus"), r"conv c1 feeds Softplus"),
])
def test_other_structures_are_not_rewritten(tmp_path, variant, message):
    model = onnx.load(str(relu_lenet(tmp_path / "other.onnx", **variant)))
    with pytest.raises(NotRewritable, match=r"^other.onnx: " + message) as caught:
        kernel_friendly(model, "other.onnx")
    assert "\n" not in str(caught.value)


def test_a_padded_or_missing_conv_is_not_rewritten(tmp_path):
    model = onnx.load(str(relu_lenet(tmp_path / "lenet.onnx")))
    conv = model.graph.node[0]
    conv.attribute.append(helper.make_attribute("strides", [2, 2]))
    with pytest.raises(NotRewritable, match=r"conv c1 is strided, padded, dilated or grouped"):
        kernel_friendly(model, "lenet.onnx")
    model = onnx.load(str(relu_lenet(tmp_path / "lenet.onnx")))
    model.graph.node[6].op_type = "MaxPool"  # C5 gone: two convs left
    with pytest.raises(NotRewritable, match=r"2 Conv nodes \(expected 3: C1, C3, C5\)"):
        kernel_friendly(model, "lenet.onnx")


def test_float_logits_drops_only_the_output_quantization():
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="gemm"),
         helper.make_node("QuantizeLinear", ["y", "s", "z"], ["yq"], name="q"),
         helper.make_node("DequantizeLinear", ["yq", "s", "z"], [OUTPUT_NAME], name="dq")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w"), numpy_helper.from_array(np.float32(0.1), "s"),
         numpy_helper.from_array(np.uint8(128), "z")])
    model = helper.make_model(g)
    assert float_logits(model)
    assert [n.op_type for n in model.graph.node] == ["Gemm"] and model.graph.node[0].output[0] == OUTPUT_NAME
    assert {t.name for t in model.graph.initializer} == {"w"}
    assert not float_logits(model)  # nothing left to drop


# ---------------------------------------------------------------- hermetic: the rule
def row(name, *, drop=0.0, smaller=3.2, worst=1.0, status="ok"):
    if status != "ok":
        return Trial(name, "", status, "boom")
    return Trial(name, "", status, accuracy_drop_points=drop, times_smaller=smaller,
                 latency_ratio={"1t_b1": worst, "2t_b64": worst / 2})


def test_rule_picks_the_fastest_in_the_worst_case_among_eligible_candidates():
    rows = [row("standard", worst=2.2), row("fast-but-big", worst=0.5, smaller=2.9),
            row("inaccurate", worst=0.4, drop=0.5), row("rewrite", worst=0.9), row("broken", status="failed")]
    choice = choose(rows, 0.2)
    assert choice.winner == "rewrite"
    assert choice.why.startswith("rewrite has the lowest worst-case latency vs fp32, 0.90x at 1t_b1, of the 2 "
                                 "candidate(s)")
    assert choice.verdicts == {"standard": "slower: worst 2.20x vs 0.90x",
                               "fast-but-big": "only 2.90× smaller (needs 3×)",
                               "inaccurate": "loses 0.50 points (limit 0.2)", "rewrite": "winner",
                               "broken": "failed: boom"}
    assert rows[3].to_record("winner")["worst_latency_ratio"] == 0.9  # the rows themselves are never changed


def test_rule_breaks_ties_by_list_order_and_says_so():
    rows = [row("simple", worst=1.00), row("fancy", worst=0.97), row("slow", worst=1.2)]
    choice = choose(rows, 0.2)
    assert choice.winner == "simple"  # 1.00 is within 5% of 0.97
    assert "tied within 5% with fancy" in choice.why
    assert choice.verdicts["fancy"].startswith("tied with simple")


def test_rule_drops_the_size_requirement_only_when_no_candidate_meets_it_and_fails_without_any():
    rows = [row("a", smaller=2.9, worst=1.5), row("b", smaller=2.8, worst=1.2)]
    choice = choose(rows, 0.2)
    assert choice.winner == "b"
    assert choice.why.endswith("no candidate is 3× smaller, so the size requirement was dropped")
    choice = choose([row("a", drop=1.0), row("b", status="failed")], 0.2)
    assert choice.winner is None
    assert choice.why.startswith("no candidate passes its checks within 0.2 points of fp32 accuracy")


def test_timing_plan_and_side_by_side_refuse_bad_input(tmp_path):
    with pytest.raises(DataError, match="expected rounds and min_calls >= 1"):
        TimingPlan(rounds=0)
    model = relu_lenet(tmp_path / "lenet.onnx")
    with pytest.raises(DataError, match="2 timing inputs for batch size 64"):
        side_by_side({"fp32": model}, load_model(model).contract, random_inputs(2), QUICK)


def test_side_by_side_gives_every_model_a_ratio_per_cell(tmp_path):
    fp32 = relu_lenet(tmp_path / "lenet.onnx")
    other = relu_lenet(tmp_path / "other.onnx", seed=3)
    cells = []
    timings = side_by_side({"fp32": fp32, "other": other}, load_model(fp32).contract, random_inputs(64), QUICK,
                           cells.append)
    assert list(timings) == CELLS and len(cells) == len(CELLS)
    for cell in timings.values():
        assert cell["fp32"]["ratio"] == 1.0 and cell["fp32"]["round_ratios"] == [1.0] * QUICK.rounds
        assert cell["other"]["ratio"] > 0 and len(cell["other"]["round_ratios"]) == QUICK.rounds
        assert cell["other"]["median_ms"] > 0


def test_search_on_a_hand_built_lenet_ships_the_winner_with_its_record(tmp_path):
    """The whole search without training: five candidates built, judged, timed, one shipped; progress
    counts every step up to a fixed total; the shipped metadata is the final record, written once."""
    model = relu_lenet(tmp_path / "lenet.onnx")
    data = write_mnist_dir(tmp_path / "mnist", train=200, test=100)
    steps = []
    result = auto_quantize(model, tmp_path / "out.onnx", data_dir=data, base=QuantSettings(calibration_count=100),
                           max_accuracy_drop=100, plan=QUICK, progress=lambda *step: steps.append(step))
    s = result.search
    assert [r["name"] for r in s["candidates"]] == CANDIDATES and all(r["status"] == "ok" for r in s["candidates"])
    assert [done for done, _, _ in steps] == list(range(10)) and {total for _, total, _ in steps} == {9}
    assert steps[-1][2] == "done" and steps[5][2].startswith("timing 5 candidate(s) against fp32")
    record = QuantizationRecord.from_json(json.loads(metadata(load(tmp_path / "out.onnx"))[PREFIX + "quantization"]))
    assert record == result.quantization and record.recipe.name == s["winner"]
    assert list(record.recipe.chosen_from) == CANDIDATES and record.validation.test_images == 100
    assert result.size.int8_bytes == (tmp_path / "out.onnx").stat().st_size
    assert s["kernel_friendly_rewrite"]["applies"] and s["kernel_friendly_rewrite"]["verification"]["images"] == 100


def test_cli_refuses_settings_the_search_chooses(runner, tmp_path):
    model = relu_lenet(tmp_path / "lenet.onnx")
    result = runner.invoke(cli, ["quantize", str(model), "--auto", "--per-tensor", "--format", "qoperator"])
    assert result.exit_code == 2
    assert "--format, --per-channel cannot be combined with --auto" in result.output
    assert not (tmp_path / "lenet.int8.onnx").exists()


# ---------------------------------------------------------------- integration: the trained models
@pytest.fixture(scope="module")
def modern_auto(modern_onnx, mnist_dir, tmp_path_factory):
    """`lenet-edge quantize --auto` on the trained lenet5-modern, with a short timing plan."""
    out_dir = tmp_path_factory.mktemp("auto")
    out, report = out_dir / "model.int8.onnx", out_dir / "quantize.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search, "DEFAULT_PLAN", QUICK)
        result = CliRunner().invoke(cli, ["quantize", str(modern_onnx), "--auto", "-o", str(out), "--report",
                                          str(report), "--data-dir", str(mnist_dir)])
    assert result.exit_code == 0, result.output
    return result.stdout, out, json.loads(report.read_text())


@pytest.mark.integration
def test_rewrite_of_the_trained_model_is_exact_on_the_test_set(modern_onnx, mnist_dir, tmp_path):
    images, _ = load_mnist(mnist_dir, "test")
    x = MODERN_PREPROCESSING(images[:2000])  # (2000, 1, 32, 32)
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(kernel_friendly(onnx.load(str(modern_onnx)), modern_onnx.name)[0], str(rewritten))
    expected, found = logits(modern_onnx, x), logits(rewritten, x)
    assert np.abs(expected - found).max() <= 1e-4
    assert (expected.argmax(1) == found.argmax(1)).all()


@pytest.mark.integration
def test_kernel_friendly_candidate_runs_every_layer_as_an_int8_kernel(modern_onnx, mnist_dir, tmp_path):
    """The kernel-friendly recipe on the trained lenet5-modern: every conv and fully connected layer an int8
    kernel, no Transpose left after onnxruntime's layout pass, logits out of the last QGemm in float."""
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(kernel_friendly(onnx.load(str(modern_onnx)), modern_onnx.name)[0], str(rewritten))
    float_path = preprocess(rewritten, tmp_path)
    calibration = model_inputs(load_mnist(mnist_dir, "train")[0][:200], MODERN_PREPROCESSING, "train")
    recipe = candidate_recipes(QuantSettings(calibration_count=200), "c1")[2]
    assert recipe.name == "kernel-friendly"
    candidate = build_candidate(recipe, float_path, tmp_path, calibration=calibration)
    assert check_structure(candidate, "kf")["int8"] == {"conv": 2, "fc": 3}
    for counts in (optimized_op_counts(candidate.path), _optimized_all(candidate.path)):
        assert counts["QLinearConv"] == 2 and counts["QGemm"] == 3
        assert not any(counts[op] for op in FLOAT_LAYERS), counts
    all_level = _optimized_all(candidate.path)
    assert all_level["Transpose"] == 0  # the NHWC layout pass cancelled every one the rewrite wrote
    assert all_level["DequantizeLinear"] == 0  # float logits: the last QGemm outputs float


@pytest.mark.integration
def test_trained_tanh_model_takes_the_rewrite_exactly_and_runs_int8_from_end_to_end(tanh_onnx, mnist_dir, tmp_path):
    """lenet5-tanh: its rewrite is exact on real digits, and the kernel-friendly candidate runs every layer,
    activation and pool as an int8 kernel (QLinearSigmoid tables, averaging QLinearConvs), no float in between."""
    x = MODERN_PREPROCESSING(load_mnist(mnist_dir, "test")[0][:2000])  # (2000, 1, 32, 32)
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(kernel_friendly(onnx.load(str(tanh_onnx)), tanh_onnx.name)[0], str(rewritten))
    assert verify_rewrite(tanh_onnx, rewritten, x, tanh_onnx.name)["argmax_mismatches"] == 0
    calibration = model_inputs(load_mnist(mnist_dir, "train")[0][:200], MODERN_PREPROCESSING, "train")
    recipe = candidate_recipes(QuantSettings(calibration_count=200), "c1")[2]
    candidate = build_candidate(recipe, preprocess(rewritten, tmp_path), tmp_path, calibration=calibration)
    assert check_structure(candidate, "kf")["int8"] == {"conv": 4, "fc": 3}  # C1, C3 and their averaging convs
    ran = _optimized_all(candidate.path)
    assert ran["QLinearConv"] == 4 and ran["QGemm"] == 3 and ran["QLinearSigmoid"] == 4, ran
    assert not any(ran[op] for op in (*FLOAT_LAYERS, "Tanh", "Sigmoid", "AveragePool", "Transpose")), ran
    assert ran["DequantizeLinear"] == 0 and ran["QuantizeLinear"] == 1  # the image in; float logits out


@pytest.mark.integration
def test_auto_winner_follows_the_rule_and_records_its_recipe(modern_auto):
    """Which candidate wins is a latency race that depends on the machine: never asserted. What is: the
    winner is the row marked so, within the budget and >= 3x smaller, its record names it, and every
    layer it meant to quantize runs as an int8 kernel."""
    stdout, out, report = modern_auto
    record, s = report["quantization"], report["search"]
    winner = next(r for r in s["candidates"] if r["name"] == s["winner"])
    assert winner["verdict"] == "winner" and record["recipe"]["name"] == s["winner"]
    assert json.loads(metadata(load(out))[PREFIX + "quantization"]) == record  # metadata written once, final
    assert record["recipe"]["chosen_from"] == CANDIDATES
    v, size = record["validation"], report["size"]
    assert report["max_accuracy_drop"] == 0.1 and "limit 0.1)" in stdout
    assert v["accuracy_drop_points"] <= 0.1 and size["times_smaller"] >= 3 and size["int8_bytes"] == out.stat().st_size
    assert size["int8_bytes"] == winner["bytes"] and v["int8_accuracy"] == winner["accuracy"]
    assert report["structure"]["int8"] == report["structure"]["expected_int8"]
    eligible = [r for r in s["candidates"] if r["status"] == "ok" and r["accuracy_drop_points"] <= 0.1
                and r["times_smaller"] >= 3]
    assert winner["worst_latency_ratio"] <= min(r["worst_latency_ratio"] for r in eligible) * 1.05


@pytest.mark.integration
def test_auto_report_and_output_list_every_candidate_with_its_figures(modern_auto):
    stdout, _, report = modern_auto
    s = report["search"]
    assert [r["name"] for r in s["candidates"]] == CANDIDATES
    rewrite = s["kernel_friendly_rewrite"]
    assert s["timing"]["cells"] == CELLS and rewrite["applies"]
    assert rewrite["verification"]["images"] == 10_000 and rewrite["verification"]["argmax_mismatches"] == 0
    assert set(s["baseline"]["latency_ms"]) == set(CELLS)
    for r in s["candidates"]:
        assert r["status"] == "ok", r
        assert 0.98 <= r["accuracy"] <= 1 and r["bytes"] > 0 and r["times_smaller"] > 2
        assert set(r["latency_ratio"]) == set(CELLS) and all(v > 0 for v in r["latency_ratio"].values())
        assert r["worst_latency_ratio"] == max(r["latency_ratio"].values())
        assert r["verdict"]
        assert r["name"] in stdout
    assert [r["name"] for r in s["candidates"] if r["verdict"] == "winner"] == [s["winner"]]
    assert s["why"].startswith(f"{s['winner']} has the lowest worst-case latency vs fp32")
    per_channel = next(r for r in s["candidates"] if r["name"] == "kernel-friendly+per-channel")
    assert per_channel["times_smaller"] < 3 and per_channel["verdict"].startswith("only")  # per-channel scales cost
    assert f"why: {s['why']}" in stdout and "layers" in report
    assert "kernel-friendly rewrite: fp32 logits within" in stdout


@pytest.mark.integration
def test_classic_lenet5_takes_the_rewrite_after_its_scales_are_folded(classic_onnx, mnist_dir, tmp_path):
    """The paper's network: its squashing constants, weighted subsampling and RBF output are folded into
    plain layers (rewrite.fold_affine), then rewritten like lenet5-tanh, proven exact on the whole test set."""
    steps = []
    result = auto_quantize(classic_onnx, tmp_path / "classic.int8.onnx", data_dir=mnist_dir, plan=QUICK,
                           progress=lambda done, total, what: steps.append((done, total, what)))
    s = result.search
    rewrite = s["kernel_friendly_rewrite"]
    assert rewrite["applies"] and rewrite["rewrites"] == [
        "subsampling-as-depthwise-conv", "constant-scales-and-shifts-into-layers", "rbf-as-gemm", "tanh-as-sigmoid",
        "c1-sigmoid-subsampling-as-4-column-conv", "c3-sigmoid-subsampling-over-column-pairs", "c5-as-nhwc-gemm"]
    assert rewrite["verification"]["images"] == 10_000 and rewrite["verification"]["argmax_mismatches"] == 0
    # progress: five candidates, the four timing cells, then done; counted up to a fixed total
    assert [done for done, _, _ in steps] == list(range(10)) and {total for _, total, _ in steps} == {9}
    assert [r["name"] for r in s["candidates"]] == CANDIDATES
    assert all(r["status"] == "ok" for r in s["candidates"]), s["candidates"]
    assert result.max_accuracy_drop == 0.1 and result.quantization.validation.accuracy_drop_points <= 0.1
    if s["winner"].startswith("kernel-friendly"):
        assert list(result.quantization.recipe.graph_rewrite) == rewrite["rewrites"]
    assert (tmp_path / "classic.int8.onnx").is_file()


def _optimized_all(path: Path) -> Counter:
    """Op types of the graph onnxruntime runs at its default level (ORT_ENABLE_ALL, layout passes included)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(path.with_suffix(".optimized.onnx"))
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return op_counts(onnx.load(opts.optimized_model_filepath))


def test_also_write_keeps_only_losers_within_the_accuracy_budget(tmp_path):
    """The pipeline asks for the standard candidate beside the winner (its microcontroller build may be
    better); one that lost too much accuracy, failed, or won already is not written."""
    from types import SimpleNamespace

    trials = [Trial("standard", "", "ok", accuracy_drop_points=0.05), Trial("standard+c1-float", "", "ok",
              accuracy_drop_points=0.9), Trial("kernel-friendly", "", "ok", accuracy_drop_points=0.0),
              Trial("kernel-friendly+qoperator", "", "failed", "no kernel")]
    judged = {t.name: SimpleNamespace(data=t.name.encode()) for t in trials if t.status == "ok"}
    paths = {name: tmp_path / f"{name}.onnx" for name in [t.name for t in trials]}
    written = search.write_also(paths, judged, trials, winner="kernel-friendly", max_accuracy_drop=0.1)
    assert written == {"standard": str(paths["standard"])}
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["standard.onnx"]
    assert paths["standard"].read_bytes() == b"standard"
