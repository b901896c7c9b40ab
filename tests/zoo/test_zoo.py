"""The conformance zoo: architectures and exporters the team did not write, each run through
export -> quantize (QDQ and QOperator, minmax and entropy) -> intensional verify.

Each model must quantize (exit 0) to a model that passes the ONNX checker and opens in
onnxruntime both with qx's session options and with onnxruntime's defaults; repeat runs give
identical bytes; QOperator candidates pass the intensional verdict. Random weights, small widths.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ZOO_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(ZOO_DIR))

from architectures import TORCH_ZOO  # noqa: E402
from keras_models import KERAS_ZOO  # noqa: E402
from samples import write_samples  # noqa: E402

pytestmark = pytest.mark.slow

# name -> (exporter, how to build). "legacy" is torch's TorchScript-based exporter, which
# deduplicates equal initializers (shared weights and biases feeding several nodes).
MODELS = {**{name: ("dynamo", name) for name in TORCH_ZOO}, "tied_weights_legacy": ("legacy", "tied_weights"),
          **{name: ("tf", name) for name in KERAS_ZOO}}


def _export(qx, name: str, folder: Path, keras_file: Path | None = None) -> Path:
    """Export zoo model ``name`` into ``folder``; a Keras model is saved there first unless
    ``keras_file`` names one already saved (a .keras zip records its save time)."""
    exporter, source = MODELS[name]
    out = folder / "fp32.onnx"
    if exporter == "tf":
        keras_file = keras_file or KERAS_ZOO[source](folder / f"{name}.keras")
        result = qx("export", "--framework", "tf", "--model", keras_file, "--custom-objects",
                    ZOO_DIR / "keras_subclassed.py", "-o", out)
    else:
        import torch
        from safetensors.torch import save_file

        factory, inputs = TORCH_ZOO[source]
        module = factory()
        weights = folder / "weights.safetensors"
        save_file({k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}, str(weights))
        del torch
        specs = [a for spec in inputs for a in ("--input", spec)]
        result = qx("export", "--framework", "torch", "--model", f"{ZOO_DIR / 'architectures.py'}:{source}",
                    "--weights", weights, "--exporter", exporter, *specs, "-o", out)
    assert result.code == 0, result
    return out


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request, tmp_path_factory):
    from mlperf_qx.cli.main import main

    class _Qx:  # the module-scoped twin of conftest's qx fixture
        def __call__(self, *args):
            import contextlib
            import io

            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
                code = main([str(a) for a in args])
            from conftest import QxRun

            return QxRun(code, out.getvalue(), err.getvalue())

    name = request.param
    folder = tmp_path_factory.mktemp(name)
    fp32 = _export(_Qx(), name, folder)
    calib = write_samples(fp32, folder / "calib", count=12)
    validation = write_samples(fp32, folder / "validation", count=6, seed=1, prefix="val")
    ids = (validation / "list.txt").read_text().split()
    (validation / "val_map.txt").write_text("".join(f"{i} 0\n" for i in ids))
    return {"name": name, "fp32": fp32, "calib": calib, "validation": validation, "folder": folder}


def _quantize(qx, model, out: Path, method: str, fmt: str):
    return qx("quantize", model["fp32"], "--calib", model["calib"], "--calib-list", model["calib"] / "list.txt",
              "--method", method, "--format", fmt, "-o", out)


def _opens_everywhere(path: Path) -> None:
    onnx.checker.check_model(str(path))
    from mlperf_qx.runtime import open_session

    for session in (open_session(path), ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])):
        feeds = {}
        for value in session.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in value.shape]
            feeds[value.name] = (np.zeros(shape, np.float32) if value.type == "tensor(float)"
                                 else np.ones(shape, np.int64))
        assert all(np.isfinite(o).all() for o in session.run(None, feeds) if o.dtype.kind == "f")


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_quantizes_to_a_valid_model(qx, exported, tmp_path, method, fmt):
    out = tmp_path / "int8.onnx"
    result = _quantize(qx, exported, out, method, fmt)
    assert result.code == 0, (exported["name"], result)
    assert re.search(r"SQNR [-\d.]+ dB", result.out), result.out
    _opens_everywhere(out)


def test_repeat_runs_are_byte_identical(qx, exported, tmp_path):
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert _quantize(qx, exported, first, "entropy", "qdq").code == 0
    assert _quantize(qx, exported, second, "entropy", "qdq").code == 0
    assert first.read_bytes() == second.read_bytes(), exported["name"]


def test_export_is_byte_identical(qx, exported, tmp_path):
    """A second export in the same process: tf2onnx's name counters have moved on by then."""
    keras_file = exported["folder"] / f"{exported['name']}.keras"
    again = _export(qx, exported["name"], tmp_path, keras_file if keras_file.exists() else None)
    assert again.read_bytes() == exported["fp32"].read_bytes(), exported["name"]


def _assert_intensional_pass(qx, model, candidate: Path, out: Path) -> dict:
    """verify-equivalence --mode intensional of ``candidate`` against the zoo model: every check
    passes and the exit is 0; returns the checks by name."""
    import json

    result = qx("verify-equivalence", "--reference", model["fp32"], "--candidate", candidate,
                "--dataset", model["validation"], "--labels", model["validation"] / "val_map.txt",
                "--calib-list", model["calib"] / "list.txt", "--mode", "intensional", "--out", out)
    checks = {c["name"]: c for c in json.loads((out / "report.json").read_text())["intensional"]["checks"]}
    failed = {name for name, c in checks.items() if not c["passed"]}
    assert not failed, (model["name"], [checks[n] for n in failed])
    assert result.code == 0, result
    return checks


def test_qoperator_candidate_passes_the_intensional_verdict(qx, exported, tmp_path):
    candidate = tmp_path / "int8_qop.onnx"
    assert _quantize(qx, exported, candidate, "minmax", "qoperator").code == 0
    checks = _assert_intensional_pass(qx, exported, candidate, tmp_path / "verify")
    assert "over 0 tensors" not in checks["weights_half_step"]["measured"]


# Zoo models that have something to rescale (a MatMul by a constant; Conv -> Relu -> Conv), and the pass.
EQUALIZED_BY = {"hf_bert": "smoothquant", "hf_vit": "smoothquant", "hf_convnext": "smoothquant", "hf_resnet": "cle",
                "keras_subclassed": "smoothquant"}


def test_equalized_candidate_passes_the_intensional_verdict(qx, exported, tmp_path):
    """--equalize smoothquant,cle on architectures and exporters the team did not write: the
    rewrite stays FP32-exact (quantize checks it), and verify rebuilds the equalized reference from
    the record and passes every intensional check; a model with nothing to rescale is unchanged."""
    import json

    candidate = tmp_path / "int8_equalized.onnx"
    result = qx("quantize", exported["fp32"], "--calib", exported["calib"], "--calib-list",
                exported["calib"] / "list.txt", "--equalize", "smoothquant,cle", "-o", candidate)
    assert result.code == 0, (exported["name"], result)
    props = {p.key: p.value for p in onnx.load(str(candidate), load_external_data=False).metadata_props}
    summary = json.loads(props["qx.quantization"]).get("equalization") or {}
    if exported["name"] in EQUALIZED_BY:  # so the verdict below is not passed by doing nothing
        assert EQUALIZED_BY[exported["name"]] in summary.get("passes", []), (exported["name"], summary)
    _assert_intensional_pass(qx, exported, candidate, tmp_path / "verify")


def test_a_second_canonicalization_changes_nothing(exported):
    """quantize canonicalizes what qx export already canonicalized, and verify replays it on the
    FP32 file: on a canonical model every pass must be a no-op (no op, node or initializer change,
    identical bytes), or the replay would compare the candidate with a different graph."""
    import onnx_ir as ir

    from mlperf_qx.ir.canonicalize import canonicalization_pipeline

    once, _ = canonicalization_pipeline()(ir.serde.deserialize_model(onnx.load(str(exported["fp32"]))))
    first = ir.serde.serialize_model(once).SerializeToString()
    twice, records = canonicalization_pipeline()(ir.serde.deserialize_model(onnx.load_from_string(first)))
    changed = [r for r in records if r.modified or r.op_changes or r.initializers[0] != r.initializers[1]]
    assert changed == [], (exported["name"], changed)
    assert ir.serde.serialize_model(twice).SerializeToString() == first, exported["name"]
