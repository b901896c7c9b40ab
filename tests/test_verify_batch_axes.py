"""Verify under LoadGen with an output whose batch axis is not the first (a CTC recognizer's
time x batch x classes, ddddocr's output '387'): declared or given with --batch-axis it is scored;
otherwise the error inside LoadGen's callback ends as a clean exit 2 with its cause (it aborted
the process with std::bad_function_call, exit 134)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from conftest import assert_user_error
from helpers import make_model, rng_array, tensor

pytestmark = pytest.mark.slow


def _time_major(folder, declared: bool):
    """x (batch x 8) -> logits (3 x batch x 5): time first, as CTC recognizers write them."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="proj"),
             helper.make_node("Reshape", ["h", "shape"], ["steps"], name="steps"),
             helper.make_node("Transpose", ["steps"], ["y"], perm=[1, 0, 2], name="time_major")]
    out_shape = ["time", "batch", 5] if declared else [None, None, 5]
    model = make_model(nodes, [tensor("x", ["batch", 8])], [tensor("y", out_shape)],
                       [("W", rng_array((8, 15))), ("shape", np.array([-1, 3, 5], np.int64))])
    fp32 = folder / "fp32.onnx"
    onnx.save(model, fp32)
    data = folder / "data"
    data.mkdir()
    for i in range(12):
        np.save(data / f"s{i:02d}.npy", rng_array((1, 8), i))
    (folder / "list.txt").write_text("".join(f"s{i:02d}\n" for i in range(12)))
    return fp32, data


def _verify(qx, folder, fp32, data, *extra):
    from mlperf_qx.cli.main import main

    int8 = folder / "int8.onnx"
    if not int8.exists():
        assert main(["quantize", str(fp32), "--calib", str(data), "-o", str(int8)]) == 0
    return qx("verify-equivalence", "--reference", fp32, "--candidate", int8, "--dataset", data, "--sample-list",
              folder / "list.txt", "--task", "raw", "--mode", "extensional", "--duration-ms", "200",
              "--scenario", "SingleStream", "--out", folder / "v", *extra)


def test_an_error_inside_a_loadgen_callback_is_a_clean_exit_with_its_cause(qx, tmp_path):
    fp32, data = _time_major(tmp_path, declared=False)
    result = _verify(qx, tmp_path, fp32, data)
    assert_user_error(result, "output 'y' has shape (3, 1, 5)")


def test_a_batch_axis_given_with_the_flag_is_scored(qx, tmp_path):
    fp32, data = _time_major(tmp_path, declared=False)
    result = _verify(qx, tmp_path, fp32, data, "--batch-axis", "y=1")
    assert result.code == 0, result


def test_a_declared_batch_axis_is_scored_and_a_wrong_flag_refused(qx, tmp_path):
    fp32, data = _time_major(tmp_path, declared=True)
    result = _verify(qx, tmp_path, fp32, data)
    assert result.code == 0, result
    assert_user_error(_verify(qx, tmp_path, fp32, data, "--batch-axis", "logits=1"),
                      "--batch-axis 'logits'", "outputs are y")
