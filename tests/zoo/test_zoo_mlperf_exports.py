"""Export zoo of MLPerf-shaped models (issue 20): a DLRM-like net and GPT-2 through both torch
exporters, DistilBERT, ALBERT, a T5 encoder and Swin through the legacy one, Keras
EfficientNetB0, and a keras_hub-style BERT backbone as .keras and as SavedModel.

Each exports with exit 0 (the FP32 check against the framework passes), opens in onnxruntime
with its defaults and runs, and a second export gives identical bytes; qx quantize's default
output passes the intensional verdict on held-out samples. Tiny seeded configs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import onnx_ir as ir
import pytest

ZOO_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(ZOO_DIR))

from mlperf_shapes import MLPERF_ZOO  # noqa: E402

pytestmark = pytest.mark.slow

TORCH_MODELS = {f"{name}_{exporter}": (name, exporter)
                for name, (_, _, exporters) in MLPERF_ZOO.items() for exporter in exporters}
KERAS_MODELS = {"keras_efficientnet_b0": "efficientnet_b0", "keras_bert_keras": "bert_keras",
                "keras_bert_saved_model": "bert_saved_model"}


def _qx(*args):
    from conftest import QxRun
    from mlperf_qx.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        code = main([str(a) for a in args])
    return QxRun(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """sources(name) -> the qx export arguments of zoo model ``name`` (weights or Keras file saved once)."""
    made: dict[str, list] = {}

    def get(name: str) -> list:
        if name not in made:
            made[name] = _save(name, tmp_path_factory.mktemp(name))
        return made[name]

    return get


def _save(name: str, folder: Path) -> list:
    if name in KERAS_MODELS:
        import keras_bert

        builder = getattr(keras_bert, KERAS_MODELS[name])
        path = builder(folder / ("model" if "saved_model" in name else "model.keras"))
        return ["--framework", "tf", "--model", path]
    from safetensors.torch import save_model

    source, exporter = TORCH_MODELS[name]
    factory, inputs, _ = MLPERF_ZOO[source]
    weights = folder / "weights.safetensors"
    save_model(factory(), str(weights))  # as safetensors recommends: one name per tied tensor (GPT-2)
    specs = [a for spec in inputs for a in ("--input", spec)]
    return ["--framework", "torch", "--model", f"{ZOO_DIR / 'mlperf_shapes.py'}:{source}", "--weights", weights,
            "--exporter", exporter, *specs]


def _seeded_feeds(path: Path, session: ort.InferenceSession, seed: int) -> dict[str, np.ndarray]:
    """Inputs drawn within each id input's embedding table, padding-pattern masks."""
    from mlperf_qx.index_inputs import index_bounds
    from mlperf_qx.input_spec import InputSpec, random_inputs

    dtypes = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32"}
    specs = [InputSpec(i.name, tuple(d if isinstance(d, int) else 1 for d in i.shape), dtypes[i.type])
             for i in session.get_inputs()]
    return random_inputs(specs, seed, index_bounds(ir.serde.deserialize_model(onnx.load(str(path)))))


def _runs_with_onnxruntime_defaults(path: Path) -> None:
    session = ort.InferenceSession(str(path))  # onnxruntime's defaults: all optimizations, default providers
    assert all(np.isfinite(o).all() for o in session.run(None, _seeded_feeds(path, session, 0)))


@pytest.fixture(scope="module")
def written() -> dict[str, Path]:
    """name -> the FP32 file the export test wrote (the verdict test quantizes it)."""
    return {}


@pytest.mark.parametrize("name", sorted([*TORCH_MODELS, *KERAS_MODELS]))
def test_exports_opens_and_repeats_byte_identical(sources, written, tmp_path, name):
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    result = _qx("export", *sources(name), "--json", "-o", first)
    assert result.code == 0, (name, result)
    errors = {c["name"]: c["max_abs_error"] for c in json.loads(result.out)["fp32_check"]}
    print(f"\nzoo export {name}: FP32 check max abs error {errors}")
    _runs_with_onnxruntime_defaults(first)
    written[name] = first
    if name in REPEAT_IN_A_FRESH_PROCESS:
        _export_in_a_fresh_process(sources(name), second, "--json")
    else:
        assert _qx("export", *sources(name), "--json", "-o", second).code == 0
    assert first.read_bytes() == second.read_bytes(), name


# A second EfficientNetB0 export in the same process differs (tf2onnx's process-wide state
# reaches the canonical passes through its names); two runs of qx give identical bytes.
REPEAT_IN_A_FRESH_PROCESS = {"keras_efficientnet_b0"}


def _export_in_a_fresh_process(args: list, out: Path, *extra) -> None:
    """qx in a new interpreter with another string-hash seed. Under seed 6 tf2onnx keeps a no-op
    Reshape in EfficientNetB0's block6b that it drops under most seeds (seeds 1-5 and 12345 did)."""
    env = {**os.environ, "PYTHONHASHSEED": "6"}
    done = subprocess.run([sys.executable, "-m", "mlperf_qx.cli.main", "export", *map(str, args), *extra,
                           "-o", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def _write_samples(fp32: Path, folder: Path, count: int, seed: int) -> Path:
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    folder.mkdir()
    for index in range(count):
        np.savez(folder / f"s{seed + index:03d}.npz", **_seeded_feeds(fp32, session, seed + index))
    return folder


# Measured PASS too, left out of CI for time (quantize and verify take 20 s each):
# swin_legacy, keras_efficientnet_b0, keras_bert_saved_model (the .keras backbone's graph).
VERDICT_MODELS = sorted({*TORCH_MODELS, "keras_bert_keras"} - {"swin_legacy"})


@pytest.mark.parametrize("name", VERDICT_MODELS)
def test_quantized_passes_the_intensional_verdict(sources, written, tmp_path, name):
    """qx quantize's default, then verify-equivalence --mode intensional on held-out samples."""
    fp32 = written.get(name)
    if fp32 is None:
        fp32 = tmp_path / "fp32.onnx"
        assert _qx("export", *sources(name), "-o", fp32).code == 0
    calib, validation = _write_samples(fp32, tmp_path / "calib", 8, 0), _write_samples(fp32, tmp_path / "val", 4, 100)
    int8 = tmp_path / "int8.onnx"
    result = _qx("quantize", fp32, "--calib", calib, "-o", int8)
    assert result.code == 0, (name, result)
    result = _qx("verify-equivalence", "--reference", fp32, "--candidate", int8, "--dataset", validation,
                 "--task", "raw", "--mode", "intensional", "--out", tmp_path / "v")
    checks = json.loads((tmp_path / "v" / "report.json").read_text())["intensional"]["checks"]
    assert {c["name"]: c["status"] for c in checks if c["status"] != "PASS"} == {}, (name, checks)
    assert result.code == 0, (name, result)


def test_saved_model_export_is_identical_in_another_process(sources, tmp_path):
    """tf2onnx kept a different one of several equal constants in each process (string hashing
    differs): a fresh interpreter with another hash seed must write the same bytes."""
    args = sources("keras_bert_saved_model")
    here, there = tmp_path / "here.onnx", tmp_path / "there.onnx"
    assert _qx("export", *args, "-o", here).code == 0
    _export_in_a_fresh_process(args, there)
    assert here.read_bytes() == there.read_bytes()


def test_swin_through_dynamo_names_torchs_cause(sources, tmp_path):
    args = [str(a) for a in sources("swin_legacy")]
    args[args.index("legacy")] = "dynamo"
    result = _qx("export", *args, "-o", tmp_path / "m.onnx")
    assert result.code == 2, result
    line = result.err.strip()
    assert "Cannot view a tensor" in line and "try --exporter legacy" in line, line
    assert "\x1b" not in line and "\n" not in line
    assert not (tmp_path / "m.onnx").exists()
