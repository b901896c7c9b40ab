"""quantize never writes a file that claims to be the int8 model while it holds no int8 op: one
line naming the file and why, exit 2 when the model or the flags leave nothing to quantize, exit 1
when measurement (a precision target, verify's layer tolerance) kept every op FP32; nothing
written. And verify says of such a file that its quantization check had nothing to check."""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from conftest import assert_user_error
from helpers import make_model, rng_array, tensor

ZOO_DIR = Path(__file__).resolve().parent / "zoo"


def _mlp(folder: Path, samples: int = 12) -> tuple[Path, Path]:
    """x -> MatMul -> Relu -> MatMul, and ``samples`` calibration samples."""
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "W2"], ["y"], name="fc2")]
    model = make_model(nodes, [tensor("x", ["b", 16])], [tensor("y", ["b", 4])],
                       [("W1", rng_array((16, 32), 1, 0.3)), ("W2", rng_array((32, 4), 2, 0.3))])
    onnx.save(model, folder / "fp32.onnx")
    calib = folder / "calib"
    calib.mkdir()
    for i in range(samples):
        np.save(calib / f"s{i:02d}.npy", rng_array((1, 16), 10 + i))
    return folder / "fp32.onnx", calib


def _one_error_line(result) -> str:
    lines = [line for line in result.err.strip().splitlines() if not line.startswith("qx: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.err, result.err
    return lines[0]


def test_a_target_no_int8_op_can_meet_is_refused_with_exit_1_and_no_file(qx, tmp_path):
    fp32, calib = _mlp(tmp_path)
    out = tmp_path / "int8.onnx"
    result = qx("quantize", fp32, "--calib", calib, "--target-cosine", "1.0", "-o", out)
    assert result.code == 1, result
    line = _one_error_line(result)
    assert str(fp32) in line and "every candidate op was kept FP32" in line and "no file written" in line, line
    assert "mean cosine >= 1" in line and "loosen the target" in line, line
    assert "all int8 measured mean cosine 0." in line or "all int8 it measured mean cosine 0." in line, line
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["fp32.onnx", "calib"]
    # The same model with a target int8 can meet is written, with int8 ops.
    assert qx("quantize", fp32, "--calib", calib, "--target-cosine", "0.9", "-o", out).code == 0
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(out)).graph.node}


def test_verify_layer_tolerance_keeping_the_only_op_fp32_is_exit_1(qx, tmp_path):
    """One MatMul; the tenth sample carries a spike of 1e4 that sets the range, so on the first eight
    (the check samples) every value rounds to 0: the layer is at 0 dB, and only FP32 holds it."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")]
    onnx.save(make_model(nodes, [tensor("x", ["b", 16])], [tensor("y", ["b", 4])], [("W", rng_array((16, 4), 1, 0.3))]),
              tmp_path / "fp32.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(10):
        sample = rng_array((1, 16), 20 + i)
        sample[0, 0] = 1e4 if i == 9 else sample[0, 0]
        np.save(calib / f"s{i}.npy", sample)
    out = tmp_path / "int8.onnx"
    result = qx("quantize", tmp_path / "fp32.onnx", "--calib", calib, "-o", out)
    assert result.code == 1, result
    line = _one_error_line(result)
    assert "every candidate op was kept FP32" in line and "1 by measurement" in line, line
    assert "verify's layer tolerance" in line and "'y' is at 0.0 dB" in line, line
    assert not out.exists()


def test_excluding_every_op_is_bad_input_exit_2(qx, tmp_path):
    fp32, calib = _mlp(tmp_path, samples=2)
    out = tmp_path / "int8.onnx"
    result = qx("quantize", fp32, "--calib", calib, "--exclude", "MatMul", "--exclude", "relu", "-o", out)
    assert_user_error(result, str(fp32), "nothing to quantize", "no file written", "excluded by --exclude (×3)",
                      "--exclude fewer ops")
    assert not out.exists()


def test_compute_only_inside_an_if_is_refused_naming_the_bodies(qx, tmp_path):
    """silero VAD's shape: an Equal on the sample rate and an If whose branches hold the network."""
    def branch(name, seed):
        nodes = [helper.make_node("MatMul", ["x", f"W_{name}"], [f"h_{name}"], name=f"proj_{name}")]
        return helper.make_graph(nodes, name, [], [tensor(f"h_{name}", None)],
                                 [onnx.numpy_helper.from_array(rng_array((8, 4), seed), f"W_{name}")])

    nodes = [helper.make_node("Equal", ["sr", "k16"], ["is16"], name="is16"),
             helper.make_node("If", ["is16"], ["y"], then_branch=branch("then", 1), else_branch=branch("else", 2),
                              name="by_rate")]
    model = make_model(nodes, [tensor("x", [1, 8]), tensor("sr", [], TensorProto.INT64)], [tensor("y", [1, 4])],
                       [("k16", np.array(16000, np.int64))])
    onnx.save(model, tmp_path / "fp32.onnx")
    out = tmp_path / "int8.onnx"
    result = qx("quantize", tmp_path / "fp32.onnx", "--calib", tmp_path, "-o", out)
    assert_user_error(result, "fp32.onnx: nothing to quantize", "(MatMul×2) is inside If bodies",
                      "main graph only", "(Equal, If)", "export the model without the control flow")
    assert not out.exists()


def test_silero_vad_is_refused_before_calibration(qx, tmp_path):
    """The real file (silero-vad 6.2.3, from the install step's cache): Conv×12 and LSTM×4 inside an If."""
    sys.path.insert(0, str(ZOO_DIR))
    from fetch_real_models import cached

    out = tmp_path / "int8.onnx"
    result = qx("quantize", cached("silero_vad.onnx"), "--calib", tmp_path, "-o", out)
    assert_user_error(result, "silero_vad.onnx: nothing to quantize", "(Conv×12, LSTM×4) is inside If bodies")
    assert not out.exists()


def test_verify_says_a_candidate_without_int8_had_nothing_to_check(qx, tmp_path):
    """An FP32 file given as the candidate: qdq_symmetric_int8 checked nothing and says so (NOT
    CHECKED, not a FAIL or a PASS); the verdict fails on the missing provenance."""
    fp32, calib = _mlp(tmp_path, samples=2)
    result = qx("verify-equivalence", "--reference", fp32, "--candidate", fp32, "--dataset", calib, "--task", "raw",
                "--mode", "intensional", "--out", tmp_path / "v")
    checks = {c["name"]: c for c in json.loads((tmp_path / "v" / "report.json").read_text())["intensional"]["checks"]}
    qdq = checks["qdq_symmetric_int8"]
    assert qdq["status"] == "NOT CHECKED" and "holds no int8 op" in qdq["detail"], qdq
    assert checks["calibration_provenance"]["status"] == "FAIL" and result.code == 1, (checks, result)


def test_verify_on_an_fp32_file_with_quantize_provenance_is_inconclusive(qx, tmp_path):
    """What quantize wrote before it refused: the FP32 graph carrying an int8 model's provenance. No
    check fails and the Q/DQ check had nothing to check: INCONCLUSIVE, exit 4 (it was FAILED)."""
    fp32, calib = _mlp(tmp_path, samples=2)
    assert qx("quantize", fp32, "--calib", calib, "-o", tmp_path / "int8.onnx").code == 0
    unquantized = onnx.load(str(fp32))
    unquantized.metadata_props.extend(onnx.load(str(tmp_path / "int8.onnx")).metadata_props)
    onnx.save(unquantized, str(tmp_path / "named_int8.onnx"))
    result = qx("verify-equivalence", "--reference", fp32, "--candidate", tmp_path / "named_int8.onnx", "--dataset",
                calib, "--task", "raw", "--mode", "intensional", "--out", tmp_path / "v")
    checks = json.loads((tmp_path / "v" / "report.json").read_text())["intensional"]["checks"]
    assert {c["name"] for c in checks if c["status"] == "FAIL"} == set() and result.code == 4, (checks, result)
    assert next(c for c in checks if c["name"] == "qdq_symmetric_int8")["status"] == "NOT CHECKED"
