"""check_int8_model reads onnxruntime's optimized graph back: written with its weights beside it
(runtime.OPTIMIZED_WEIGHTS_OPTION), the graph alone is parsed for the fusion report, and the FLOP
count, which runs the optimized graph, still finds the weights."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlperf_qx.quant.runtime_check import check_int8_model
from mlperf_qx.runtime import OPTIMIZED_WEIGHTS_OPTION, open_session
from mlperf_qx.quant.weights_apart import weights_apart


def _qdq_matmul() -> onnx.ModelProto:
    """x -> Q -> DQ -> MatMul(DQ(int8 weight 64x64)) -> y: onnxruntime fuses it to an int8 kernel."""
    weight = np.random.default_rng(0).integers(-127, 128, (64, 64)).astype(np.int8)
    inits = [numpy_helper.from_array(weight, "w_q"), numpy_helper.from_array(np.float32(0.01), "w_s"),
             numpy_helper.from_array(np.int8(0), "z"), numpy_helper.from_array(np.float32(0.05), "x_s")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "z"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "x_s", "z"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "z"], ["w"]),
             helper.make_node("MatMul", ["x_dq", "w"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fusion_report_and_flops_from_the_optimized_graph_with_its_weights_beside_it():
    model = _qdq_matmul()
    feed = {"x": np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)}
    report, outputs = check_int8_model(weights_apart(model), [feed], ["y"])
    assert sum(report.int8_kernels.values()) == 1 and not report.remaining_float_compute, report
    assert report.flops is not None and report.flops.int8 == 2 * 4 * 64 * 64 and report.flops.float == 0
    assert outputs["y"].shape == (4, 64)


def test_an_optimized_model_is_saved_with_its_weights_beside_it(tmp_path):
    optimized = tmp_path / "optimized.onnx"
    session = open_session(_qdq_matmul(), optimized_model_path=optimized)
    assert session.get_session_options().get_session_config_entry(OPTIMIZED_WEIGHTS_OPTION) == "optimized.onnx.data"
    graph_only = onnx.load(str(optimized), load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in graph_only.graph.initializer)
    assert (tmp_path / "optimized.onnx.data").stat().st_size >= 64 * 64


def test_cosine_reads_an_all_zero_side_as_no_agreement():
    """Two all-zero tensors agree; one all-zero against a non-zero one keeps nothing of it (an int8
    layer quantized to zeros must not report a perfect 1.0)."""
    from mlperf_qx.quant.runtime_check import cosine

    values = np.array([0.5, -2.0, 3.0], np.float32)
    assert cosine(values, 2 * values) == pytest.approx(1.0)
    assert cosine(values, -values) == pytest.approx(-1.0)
    assert cosine(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine(values, np.zeros(3)) == 0.0 and cosine(np.zeros(3), values) == 0.0
