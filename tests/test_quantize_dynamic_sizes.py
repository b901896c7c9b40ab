"""A fully convolutional model calibrated on samples of several sizes (symbolic H and W): every
place that joins per-sample outputs (calibration's captured references, the output SQNR check, the
held-out figures of a precision target) must take outputs of different shapes. Found by a user's
run: an internal error (np.concatenate) once calibration had finished."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

SIZES = [(12, 12), (20, 16), (8, 24)]


def _fully_convolutional(path):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((4, 8, 3, 3)) * 0.3).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2"], ["y"], pads=[1, 1, 1, 1])],
        "fcn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, "h", "w"])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _mixed_samples(folder, count=12):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(count):
        np.save(folder / f"s{i:02d}.npy", rng.standard_normal((3, *SIZES[i % len(SIZES)])).astype(np.float32))
    return folder


@pytest.mark.parametrize("extra", [("--method", "minmax"), ("--method", "entropy"),
                                   ("--target-cosine", "0.99", "--holdout", "3")])
def test_samples_of_several_sizes_quantize(qx, tmp_path, extra):
    model, calib, out = _fully_convolutional(tmp_path / "fcn.onnx"), _mixed_samples(tmp_path / "calib"), tmp_path / "int8.onnx"
    result = qx("quantize", model, "--calib", calib, "-o", out, "--json", *extra)
    assert result.code == 0, result
    assert out.exists()
