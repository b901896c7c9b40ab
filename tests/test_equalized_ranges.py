"""``--equalize smoothquant`` with minmax: the ranges the observing FP32 pass derives for the
equalized model are the ones a real calibration pass over the equalized model measures (bit for bit,
or within float rounding after an outlier side path), and calibration then runs no pass of its own."""

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlperf_qx.calibration.model_inputs import model_inputs
from mlperf_qx.calibration.readers import CalibrationSet
from mlperf_qx.quant import calibrated_ranges
from mlperf_qx.quant.annotate import plan_quantization
from mlperf_qx.quant.calibrated_ranges import calibrate
from mlperf_qx.quant.equalization import inverse_nodes_kept_fp32
from mlperf_qx.quant.equalize import equalize
from mlperf_qx.quant.equalized_ranges import tensors_to_range
from mlperf_qx.quant.options import QuantizeOptions
from mlperf_qx.quant.spec import Method

WIDTH, HIDDEN, TOKENS = 16, 24, 8


def _block(residual: bool, seed: int = 3):
    """LayerNormalization (one channel 60x the rest) -> MatMul -> bias -> Relu -> MatMul -> bias.
    ``residual``: the normalized input is also added back at the end, so its inverse is an explicit
    Mul and the outlier channel may be split off to an FP32 side path; without it each layer's
    output ends the graph (no side path can be added back), so the first layer's inverse folds
    into the LayerNormalization and the second's is a Mul without a split."""
    rng = np.random.default_rng(seed)
    gamma = np.ones(WIDTH, np.float32)
    gamma[3] = 60.0
    arrays = {"gamma": gamma, "beta": np.zeros(WIDTH, np.float32),
              "w1": rng.standard_normal((WIDTH, HIDDEN)).astype(np.float32),
              "b1": rng.standard_normal(HIDDEN).astype(np.float32),
              "w2": (rng.standard_normal((HIDDEN, WIDTH)) / 4).astype(np.float32),
              "b2": rng.standard_normal(WIDTH).astype(np.float32)}
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["h"], name="ln", axis=-1),
             helper.make_node("MatMul", ["h", "w1"], ["a"], name="mm1"),
             helper.make_node("Add", ["a", "b1"], ["a_biased"], name="add1"),
             helper.make_node("Relu", ["a_biased"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["c"], name="mm2"),
             helper.make_node("Add", ["c", "b2"], ["c_biased" if residual else "y"], name="add2")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, WIDTH])]
    if residual:
        nodes.append(helper.make_node("Add", ["c_biased", "h"], ["y"], name="residual"))
    else:
        outputs.append(helper.make_tensor_value_info("a_biased", TensorProto.FLOAT, [1, TOKENS, HIDDEN]))
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, WIDTH])],
                              outputs, [numpy_helper.from_array(v, k) for k, v in arrays.items()])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    samples = {str(i): (rng.standard_normal((1, TOKENS, WIDTH)) * 3).astype(np.float32) for i in range(12)}
    return model, CalibrationSet(list(samples), lambda i: {"x": samples[i]}, model_inputs(model), "list")


def _both_ways(model, calib, tmp_path, method=Method.MINMAX):
    """(the equalization, the ranges the observing pass gave, those of a calibration pass over the
    equalized model)."""
    options = QuantizeOptions(tmp_path, method=method, equalize=["smoothquant"], show_progress=False)
    ranges_of = tensors_to_range(model, options)
    equalization = equalize(model, ["smoothquant"], calib, set(), show_progress=False, ranges_of=ranges_of)
    plan = plan_quantization(model, set(), inverse_nodes_kept_fp32(equalization.record))
    one_pass = calibrate(model, plan, "key", options, calib, calib, equalization.ranges)
    second_pass = calibrate(model, plan, "key", options, calib, calib)
    return equalization, one_pass, second_pass


def test_folded_layernorm_ranges_are_the_second_pass_bit_for_bit(tmp_path, monkeypatch):
    model, calib = _block(residual=False)
    equalization, one_pass, second_pass = _both_ways(model, calib, tmp_path)
    assert [(g.input, g.inverse) for g in equalization.record.smoothquant] == [("h", "layernorm"), ("r", "mul")]
    assert not any(g.split for g in equalization.record.smoothquant)
    assert one_pass.observers and one_pass.observers.keys() == second_pass.observers.keys()
    assert {"h", "r_smoothed"} <= one_pass.ranges.keys()  # smoothed inputs: max_j amax_j / s_j
    assert {t: (r.amax, r.count, r.method) for t, r in one_pass.ranges.items()} == \
           {t: (r.amax, r.count, r.method) for t, r in second_pass.ranges.items()}
    # It came from the observing pass: calibration ran no model.
    monkeypatch.setattr(calibrated_ranges, "observe", pytest.fail)
    again = calibrate(model, plan_quantization(model, set(), {}), "key", QuantizeOptions(tmp_path, show_progress=False),
                      calib, calib, equalization.ranges)
    assert again.ranges.keys() == one_pass.ranges.keys() and again.batch == 1


def test_split_outlier_ranges_equal_the_second_pass_within_rounding(tmp_path):
    model, calib = _block(residual=True)
    equalization, one_pass, second_pass = _both_ways(model, calib, tmp_path)
    group = equalization.record.smoothquant[0]
    assert group.inverse == "mul" and group.split, equalization.record
    assert {"h_smoothed", "r", "c_biased_with_outliers"} <= one_pass.ranges.keys()  # r: after mm1's side path
    assert one_pass.ranges.keys() == second_pass.ranges.keys()
    assert equalization.ranges.observers_for(sorted(one_pass.ranges)) is not None  # all from the observing pass
    for tensor, measured in second_pass.ranges.items():
        derived = one_pass.ranges[tensor]
        assert derived.count == measured.count and derived.method == measured.method, tensor
        assert derived.amax == pytest.approx(measured.amax, rel=1e-5, abs=0), tensor  # the side path's sum order
    # Upstream of the first side path the values are the same bits: the input and its smoothed copy.
    assert all(one_pass.ranges[t].amax == second_pass.ranges[t].amax for t in ("h", "h_smoothed"))
    assert one_pass.references.keys() == {"y"} and one_pass.references["y"].shape[0] == 4


def test_histogram_methods_and_tensors_the_pass_cannot_know_keep_the_second_pass(tmp_path):
    model, calib = _block(residual=True)
    equalization, entropy, _ = _both_ways(model, calib, tmp_path, Method.ENTROPY)
    assert equalization.ranges is None and entropy.batch > 0
    model, calib = _block(residual=True)
    equalization, _, _ = _both_ways(model, calib, tmp_path)
    # The int8 part of a split layer (without its outlier channels) exists only in the equalized model.
    assert equalization.ranges.observers_for(["c_biased"]) is None
    assert equalization.ranges.observers_for(["c_biased_with_outliers"]) is not None



def test_the_observing_pass_on_several_cores_measures_what_one_run_after_another_does(monkeypatch):
    # 40 samples: enough for a worker per core (calibrate.MIN_BATCHES_PER_WORKER each); the
    # samples are absorbed in their order, so the rows, weights, maxima and ranges are the same.
    from mlperf_qx.quant import smoothquant_observe
    from mlperf_qx.quant.smoothquant import find_candidates

    model, _ = _block(residual=True)
    rng = np.random.default_rng(7)
    samples = {str(i): (rng.standard_normal((1, TOKENS, WIDTH)) * 3).astype(np.float32) for i in range(40)}
    calib = CalibrationSet(list(samples), lambda i: {"x": samples[i]}, model_inputs(model), "list")
    candidates = find_candidates(model, set())
    ranges_of = tensors_to_range(model, QuantizeOptions(None, equalize=["smoothquant"], show_progress=False))
    observed = {}
    for workers in (1, 2):
        monkeypatch.setattr(smoothquant_observe, "pass_workers", lambda batches, parallel, w=workers: w)
        observed[workers] = smoothquant_observe.observe(model, candidates, calib, False, 3, ranges_of)
    one, two = observed[1], observed[2]
    for name in one.stats:
        for field in ("amax", "rows", "weights"):
            np.testing.assert_array_equal(getattr(one.stats[name], field), getattr(two.stats[name], field))
    assert [sorted(o) for o in one.outputs] == [sorted(o) for o in two.outputs] and len(one.outputs) == 3
    for a, b in zip(one.outputs, two.outputs):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    assert {n: (o.amax, o.count) for n, o in one.observers.items()} == {n: (o.amax, o.count) for n, o in two.observers.items()}


def test_a_sample_that_does_not_fit_is_named_the_same_on_several_cores(monkeypatch):
    from mlperf_qx.errors import UserInputError
    from mlperf_qx.quant import smoothquant_observe
    from mlperf_qx.quant.smoothquant import find_candidates

    model, _ = _block(residual=True)
    rng = np.random.default_rng(8)
    samples = {str(i): (rng.standard_normal((1, TOKENS, WIDTH + (3 if i == 25 else 0)))).astype(np.float32)
               for i in range(40)}
    calib = CalibrationSet(list(samples), lambda i: {"x": samples[i]}, model_inputs(model), "list")
    messages = set()
    for workers in (1, 2):
        monkeypatch.setattr(smoothquant_observe, "pass_workers", lambda batches, parallel, w=workers: w)
        with pytest.raises(UserInputError) as raised:
            smoothquant_observe.observe(model, find_candidates(model, set()), calib, False)
        messages.add(str(raised.value))
    assert len(messages) == 1 and "sample '25'" in messages.pop()
