"""Real pretrained ONNX files from registry wheels (PaddleOCR det/rec/cls via rapidocr-onnxruntime
1.4.4, YOLOv8n via nudenet 3.4.2), fetched once by the install step
(``tests/zoo/fetch_real_models.py``) and read from its cache; a missing cache fails here, naming
the script. (silero VAD 6.2.3, in the same cache, has its whole network inside an If: quantize
refuses it, ``tests/test_quantize_no_int8.py``.) Each model quantizes (QDQ and QOperator) with
exit 0, to a file that opens with qx's session options and with onnxruntime's defaults and
answers close to FP32, with identical bytes on a repeat run, and the intensional verdict on held-out samples (PASS, or the FAIL that names why)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

ZOO_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(ZOO_DIR))

from fetch_real_models import cached  # noqa: E402
from real_samples import REAL_MODELS, write_real_samples  # noqa: E402

pytestmark = pytest.mark.slow

# Output cosine vs FP32 each int8 model must keep on its samples (default minmax, per-tensor
# symmetric int8) on its 6 stand-in samples; measured minimum (QDQ, either session): det 0.53, rec 0.96, cls 0.84,
# YOLOv8n above 0.99. PaddleOCR's depthwise convolutions lose most at per-tensor int8.
COSINE_FLOOR = {"ppocr_det": 0.5, "ppocr_rec": 0.95, "ppocr_cls": 0.8, "yolov8n": 0.99}


@pytest.fixture(scope="module", params=sorted(COSINE_FLOOR))
def real(request, tmp_path_factory):
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    return {"name": name, "fp32": cached(REAL_MODELS[name][0]), "calib": write_real_samples(name, folder / "calib", 6),
            "folder": folder, "written": {}}


def _quantize(qx, model: dict, out: Path, fmt: str):
    result = qx("quantize", model["fp32"], "--calib", model["calib"], "--format", fmt, "--json", "-o", out)
    assert result.code == 0, (model["name"], fmt, result)
    model["written"][fmt] = out  # the repeat test compares a second run with it
    return json.loads(result.out)


def _outputs(session: ort.InferenceSession, calib: Path) -> list[np.ndarray]:
    """Every output of each sample, flattened into one vector per sample (the samples are stored
    as the model takes them)."""
    inputs = [i.name for i in session.get_inputs()]
    results = []
    for path in sorted(calib.glob("*.npz")):
        with np.load(path) as sample:
            feeds = {n: sample[n] for n in inputs}
        results.append(np.concatenate([np.ravel(o) for o in session.run(None, feeds)]))
    return results


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_real_model_quantizes_opens_everywhere_and_stays_close(qx, real, tmp_path, fmt):
    from mlperf_qx.runtime import open_session

    out = real["folder"] / f"{fmt}.onnx"  # module-scoped: the repeat test reads it
    _quantize(qx, real, out, fmt)
    reference = _outputs(ort.InferenceSession(str(real["fp32"]), providers=["CPUExecutionProvider"]), real["calib"])
    for session in (open_session(out), ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])):
        candidate = _outputs(session, real["calib"])
        cosine = min(_cosine(a, b) for a, b in zip(reference, candidate))
        assert cosine >= COSINE_FLOOR[real["name"]], (real["name"], fmt, cosine)


def test_real_model_repeat_runs_are_byte_identical(qx, real, tmp_path):
    """A second QDQ run against the first one (the test above's, when it ran; CI time is short)."""
    first = real["written"].get("qdq")
    if first is None:
        first = tmp_path / "a.onnx"
        _quantize(qx, real, first, "qdq")
    second = tmp_path / "b.onnx"
    _quantize(qx, real, second, "qdq")
    assert first.read_bytes() == second.read_bytes(), real["name"]


# The honest intensional verdicts that are not PASS, and the check that says why (measured on 4
# held-out stand-in samples, seed 1). ppocr_det: one layer, 'relu_8.tmp_0', is at 8.2 dB SQNR on the
# held-out samples (16.4 dB or more on the 6 calibration samples, where quantize held it to the
# tolerance): 6 stand-ins calibrate it too narrowly; calibrated on 24 it PASSes
# (min 14.9 dB on the same held-out samples).
NOT_PASSING = {"ppocr_det": "layer_numerics"}


def test_real_model_intensional_verdict(qx, real, tmp_path):
    """verify-equivalence --mode intensional on held-out samples, of the QDQ file the test above wrote."""
    candidate = real["written"].get("qdq")
    if candidate is None:
        candidate = tmp_path / "int8.onnx"
        _quantize(qx, real, candidate, "qdq")
    validation = write_real_samples(real["name"], tmp_path / "validation", 4, seed=1)
    result = qx("verify-equivalence", "--reference", real["fp32"], "--candidate", candidate, "--dataset", validation,
                "--task", "raw", "--mode", "intensional", "--out", tmp_path / "v")
    checks = json.loads((tmp_path / "v" / "report.json").read_text())["intensional"]["checks"]
    not_passing = {c["name"]: c["status"] for c in checks if c["status"] != "PASS"}
    expected = NOT_PASSING.get(real["name"])
    if expected is None:
        assert not_passing == {} and result.code == 0, (real["name"], checks, result)
        return
    assert not_passing.get(expected) == "FAIL" and result.code == 1, (real["name"], checks, result)
    assert [s for s in not_passing.values() if s == "FAIL"] == ["FAIL"], (real["name"], checks)


# Output cosine of OpenVINO's answers against onnxruntime's on the same int8 file (6 samples; its
# FP32 answers match onnxruntime's to 1.0000). OpenVINO's int8 arithmetic is its own and depends on
# the CPU. Intel Xeon with AMX: cls 0.996, det 0.992, YOLOv8n 0.962. AMD EPYC with AVX-512 VNNI: cls
# 0.996, det 0.150 (from the FPN's Concat of three Resizes and an Add, up to 67 int8 steps apart;
# onnxruntime's int8 gives 0.80 against FP32, OpenVINO's 0.12), YOLOv8n 0.969. YOLOv8n's loss is an
# OpenVINO 2026.4 error: the head's 1x1 convolutions feeding the Concat of box and class maps get
# channel 0's bias in every channel (compiled as Conv/WithoutBiases + a per-tensor FakeQuantize;
# benchmarks/openvino_bias_repro.py reproduces it).
# rec: compile_model crashes (SIGFPE) on its int8 file (calibrated on 6 or 24 samples) on both CPUs,
# so it is refused; its floor is for a release that compiles it. The floors hold on both CPUs.
OPENVINO_COSINE_FLOOR = {"ppocr_det": 0.1, "ppocr_rec": 0.9, "ppocr_cls": 0.99, "yolov8n": 0.95}


def test_real_model_runs_on_openvino_or_is_refused_in_one_line(qx, real, tmp_path):
    """``--backend openvino`` compiles each int8 file in a child process first: a file OpenVINO's CPU
    plugin crashes on (PP-OCRv4 rec's int8 QDQ model calibrated on 24 samples: SIGFPE inside
    compile_model, OpenVINO 2026.4) is refused in one line naming it, and the process that asked
    (here pytest's own) lives on; a file it compiles answers like onnxruntime's int8 session."""
    from mlperf_qx.errors import UserInputError
    from mlperf_qx.runtime import open_session
    from mlperf_qx.verify.backends import openvino_backend

    if "qdq" not in real["written"]:
        _quantize(qx, real, tmp_path / "int8.onnx", "qdq")
    candidate = real["written"]["qdq"]
    try:
        backend = openvino_backend(candidate, 4, threads=2, throughput=True)
    except UserInputError as refused:
        assert str(refused).startswith(f"{candidate}: OpenVINO: ") and "--backend onnxruntime" in str(refused)
        return
    expected = _outputs(open_session(candidate), real["calib"])
    answered = []
    for path in sorted(real["calib"].glob("*.npz")):
        with np.load(path) as sample:
            outputs = backend.run({n: sample[n] for n in backend.input_names})
        answered.append(np.concatenate([np.ravel(outputs[name]) for name in outputs]))
    assert min(_cosine(a, b) for a, b in zip(expected, answered)) > OPENVINO_COSINE_FLOOR[real["name"]], real["name"]


def test_a_missing_cache_fails_and_names_the_fetch_step():
    with pytest.raises(FileNotFoundError, match="run the install step's `python tests/zoo/fetch_real_models.py`"):
        cached("not_fetched.onnx")
