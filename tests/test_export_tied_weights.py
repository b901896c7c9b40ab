"""Tied parameters (one tensor under two names) saved the way safetensors recommends
(``safetensors.torch.save_model`` keeps one name per tensor) load; a mismatch names the tie."""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file, save_file, save_model

from conftest import assert_user_error

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
sys.path.insert(0, str(ZOO_DIR))

from architectures import tied_weights  # noqa: E402

MODEL = f"{ZOO_DIR / 'architectures.py'}:tied_weights"


def _export(qx, weights, out):
    return qx("export", "--framework", "torch", "--model", MODEL, "--weights", weights, "--input", "x:1x4x16x16",
              "--exporter", "legacy", "-o", out)


def test_save_model_file_with_one_name_per_tie_exports(qx, tmp_path):
    module = tied_weights()
    weights = tmp_path / "w.safetensors"
    save_model(module, str(weights))
    assert len({"conv1.weight", "conv2.weight"} & set(load_file(str(weights)))) == 1
    result = _export(qx, weights, tmp_path / "m.onnx")
    assert result.code == 0, result
    x = np.random.default_rng(0).standard_normal((1, 4, 16, 16)).astype(np.float32)
    (onnx_out,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})
    np.testing.assert_allclose(onnx_out, module(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_missing_tie_is_named(qx, tmp_path):
    state = {k: v.clone().contiguous() for k, v in tied_weights().state_dict().items()
             if k not in ("conv1.weight", "conv2.weight")}
    weights = tmp_path / "w.safetensors"
    save_file(state, str(weights))
    assert_user_error(_export(qx, weights, tmp_path / "m.onnx"), "conv1.weight (tied to conv2.weight)")


def test_tied_names_with_different_values_are_refused(qx, tmp_path):
    state = {k: v.clone().contiguous() for k, v in tied_weights().state_dict().items()}
    state["conv2.weight"] += 1.0
    weights = tmp_path / "w.safetensors"
    save_file(state, str(weights))
    assert_user_error(_export(qx, weights, tmp_path / "m.onnx"), "'conv1.weight' and 'conv2.weight' are tied")
    assert not (tmp_path / "m.onnx").exists()
