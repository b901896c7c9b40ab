"""MONAI's 3-D U-Nets (UNet with PReLU, DynUNet with LeakyReLU; InstanceNorm and ConvTranspose in
both), tiny configs: export, quantize (QDQ and QOperator) with exit 0 to files that open with qx's
session options and onnxruntime's defaults, identical bytes on repeat, the intensional verdict (PASS) on held-out volumes, and a FLOP share that
counts what onnxruntime runs in int8 (issue 20: it printed 100 % for a file with no QLinear op)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

ZOO_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(ZOO_DIR))

from monai_models import MONAI_ZOO, VOLUME  # noqa: E402

pytestmark = pytest.mark.slow
SHAPE = (1, 1, VOLUME, VOLUME, VOLUME)


@pytest.fixture(scope="module", params=sorted(MONAI_ZOO))
def unet(request, tmp_path_factory):
    from safetensors.torch import save_file

    from mlperf_qx.cli.main import main

    name = request.param
    folder = tmp_path_factory.mktemp(name)
    weights = folder / "weights.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in MONAI_ZOO[name]().state_dict().items()}, str(weights))
    fp32 = folder / "fp32.onnx"
    assert main(["export", "--framework", "torch", "--model", f"{ZOO_DIR / 'monai_models.py'}:{name}", "--weights",
                 str(weights), "--input", "x:" + "x".join(map(str, SHAPE)), "-o", str(fp32)]) == 0
    calib = folder / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(calib / f"s{i}.npy", rng.standard_normal(SHAPE).astype(np.float32))
    return {"name": name, "fp32": fp32, "calib": calib}


def _quantize(qx, unet, out, fmt):
    result = qx("quantize", unet["fp32"], "--calib", unet["calib"], "--format", fmt, "--json", "-o", out)
    assert result.code == 0, (unet["name"], fmt, result)
    return json.loads(result.out)


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_monai_unet_quantizes_and_opens_everywhere(qx, unet, tmp_path, fmt):
    from mlperf_qx.runtime import int8_dot_product, open_session

    out = tmp_path / "int8.onnx"
    summary = _quantize(qx, unet, out, fmt)
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    reference = ort.InferenceSession(str(unet["fp32"]), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # onnxruntime's default session on an x86 CPU without VNNI runs the U8S8 kernels that saturate
    # 16-bit pair sums (runtime.py): measured 0.988 on the UNet's QOperator file; qx's own session is exact.
    default_floor = 0.98 if int8_dot_product() is None else 0.99
    for session, floor in ((open_session(out), 0.99),
                           (ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]), default_floor)):
        candidate = session.run(None, {"x": x})[0]
        cosine = float(np.dot(reference.ravel(), candidate.ravel()) / np.linalg.norm(reference) / np.linalg.norm(candidate))
        assert cosine > floor, (unet["name"], fmt, cosine)
    nodes = {n["op_type"]: n for n in summary["nodes"]}
    assert "QLinearConvTranspose is not registered" in nodes["ConvTranspose"]["reason"]
    assert "no int8 InstanceNormalization kernel" in nodes["InstanceNormalization"]["reason"]
    flops = summary["flops_after_fusion"]
    int8_kernels = {"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger"}
    if not int8_kernels & set(summary["onnxruntime_int8_kernels"]):
        assert flops["int8"] == 0.0  # no int8 GEMM kernel in the file: 0 %, not the annotation's 100 %


def test_monai_unet_passes_the_intensional_verdict(qx, unet, tmp_path):
    int8, validation = tmp_path / "int8.onnx", tmp_path / "validation"
    _quantize(qx, unet, int8, "qdq")
    validation.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):  # held out: not the calibration samples
        np.save(validation / f"v{i}.npy", rng.standard_normal(SHAPE).astype(np.float32))
    result = qx("verify-equivalence", "--reference", unet["fp32"], "--candidate", int8, "--dataset", validation,
                "--task", "raw", "--mode", "intensional", "--out", tmp_path / "v")
    checks = json.loads((tmp_path / "v" / "report.json").read_text())["intensional"]["checks"]
    assert {c["name"]: c["status"] for c in checks if c["status"] != "PASS"} == {}, (unet["name"], checks)
    assert result.code == 0, result


def test_monai_unet_repeat_runs_are_byte_identical(qx, unet, tmp_path):
    _quantize(qx, unet, tmp_path / "a.onnx", "qdq")
    _quantize(qx, unet, tmp_path / "b.onnx", "qdq")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes(), unet["name"]
