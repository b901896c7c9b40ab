"""The equalization's exactness check: the original model's outputs come from the pass that observes
smoothquant's channels (no session of their own), and they are the model's outputs; a rewrite that
changes the model is measured as changed."""

import numpy as np
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from mlperf_qx.calibration.model_inputs import model_inputs
from mlperf_qx.calibration.readers import CalibrationSet
from mlperf_qx.quant.equalize import CHECK_SAMPLES, EXACTNESS_RTOL, equalize, model_outputs, output_difference
from mlperf_qx.quant.smoothquant import find_candidates
from mlperf_qx.quant.smoothquant_observe import observe


def _outlier_layer(seed: int = 5):
    """LayerNormalization -> MatMul, with one input channel 60x the rest (what smoothquant moves)."""
    rng = np.random.default_rng(seed)
    gamma = np.ones(16, np.float32)
    gamma[3] = 60.0
    initializers = [numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(np.zeros(16, np.float32), "beta"),
                    numpy_helper.from_array(rng.standard_normal((16, 6)).astype(np.float32), "w")]
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["h"], name="ln", axis=-1),
         helper.make_node("MatMul", ["h", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6])], initializers)
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    samples = {str(i): rng.standard_normal((1, 8, 16)).astype(np.float32) for i in range(6)}
    return model, CalibrationSet(list(samples), lambda i: {"x": samples[i]}, model_inputs(model), "list")


def test_the_observing_pass_gives_the_models_own_outputs():
    model, calib = _outlier_layer()
    outputs = observe(model, find_candidates(model, set()), calib, show_progress=False, outputs_on=CHECK_SAMPLES).outputs
    feeds = [calib.sample(i) for i in calib.ids[:CHECK_SAMPLES]]
    alone = model_outputs(ir.serde.serialize_model(model), feeds)
    assert len(outputs) == CHECK_SAMPLES and [set(o) for o in outputs] == [{"y"}] * CHECK_SAMPLES
    assert output_difference(outputs, alone)[1] <= 1e-6


def test_a_rewrite_that_changes_the_model_is_measured_and_an_equalization_is_not():
    model, calib = _outlier_layer()
    feeds = [calib.sample(i) for i in calib.ids[:CHECK_SAMPLES]]
    before = model_outputs(ir.serde.serialize_model(model), feeds)
    changed = ir.serde.serialize_model(model)
    weight = next(t for t in changed.graph.initializer if t.name == "w")
    values = numpy_helper.to_array(weight).copy()
    values[3] *= 1.001  # one channel's weights off by 0.1 %: not a rescaling the activation undoes
    weight.CopyFrom(numpy_helper.from_array(values, "w"))
    assert output_difference(before, model_outputs(changed, feeds))[1] > EXACTNESS_RTOL
    result = equalize(model, ["smoothquant"], calib, set(), show_progress=False)
    assert result.record.smoothquant and result.max_rel_error <= EXACTNESS_RTOL
    assert output_difference(before, model_outputs(ir.serde.serialize_model(model), feeds))[1] <= EXACTNESS_RTOL


def test_groups_chosen_side_by_side_equal_one_by_one_on_one_blas_thread():
    # Several groups at once, in whatever order they finish: each choice (and its measured error)
    # is the one a single thread makes alone.
    from threadpoolctl import threadpool_limits

    from mlperf_qx.quant.equalize import choose_all
    from mlperf_qx.quant.smoothquant import Candidate, choose
    from mlperf_qx.quant.smoothquant_observe import ChannelStats

    rng = np.random.default_rng(11)
    candidates, stats = [], {}
    for index, (channels, outputs) in enumerate([(24, 40), (40, 24), (24, 24), (32, 48)]):
        rows = rng.standard_normal((96, channels)).astype(np.float32)
        rows[:, rng.integers(channels)] *= 30.0  # an outlier channel
        weight = rng.standard_normal((channels, outputs)).astype(np.float32)
        candidates.append(Candidate(f"x{index}", (f"mm{index}",), "mul", (weight,)))
        stats[f"x{index}"] = ChannelStats(np.abs(rows).max(0), rows, np.ones(96))
    together = choose_all(candidates, stats, None)
    with threadpool_limits(limits=1, user_api="blas"):
        alone = [choose(c, stats[c.input]) for c in candidates]
    assert together == alone and any(c.group is not None for c in together)


def test_the_check_run_beside_gives_the_same_figures_and_refuses_a_changed_model_when_confirmed(monkeypatch):
    """``check_beside``: the exactness check runs in the background; ``confirm`` gives the figures
    the check made inside ``equalize`` gives, and raises where that one raises."""
    import pytest

    import mlperf_qx.quant.equalize as equalize_module
    from mlperf_qx.quant.equalize import EqualizationNotExact

    model, calib = _outlier_layer()
    inside = equalize(model, ["smoothquant"], calib, set(), show_progress=False)
    model, calib = _outlier_layer()
    beside = equalize(model, ["smoothquant"], calib, set(), show_progress=False, check_beside=True)
    assert beside.pending is not None
    beside.confirm()
    assert beside.pending is None and (beside.max_abs_error, beside.max_rel_error) == (inside.max_abs_error,
                                                                                       inside.max_rel_error)
    applied = equalize_module.apply_equalization

    def off_by_a_little(model, record):  # one weight off by 0.1 % after the rewrite: not exact
        applied(model, record)
        value = next(node for node in model.graph if node.name == "mm").inputs[1]  # the rescaled weight
        weight = value.const_value.numpy().copy()
        weight[3] *= 1.001
        value.const_value = ir.tensor(weight, name=value.name)

    monkeypatch.setattr(equalize_module, "apply_equalization", off_by_a_little)
    model, calib = _outlier_layer()
    with pytest.raises(EqualizationNotExact):
        equalize(model, ["smoothquant"], calib, set(), show_progress=False)
    model, calib = _outlier_layer()
    late = equalize(model, ["smoothquant"], calib, set(), show_progress=False, check_beside=True)
    with pytest.raises(EqualizationNotExact):
        late.confirm()
