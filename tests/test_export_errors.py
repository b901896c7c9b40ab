"""Bad input to qx export: one line, exit 2, no traceback, no output file, nothing executed."""

import pickle

import pytest
import torch

from conftest import ZOO, assert_user_error, save_trained_looking_weights
from models import zoo


@pytest.fixture
def mlp_weights(tmp_path):
    return save_trained_looking_weights(zoo.MLP(), tmp_path / "mlp.safetensors")


def _export(qx, out, model, weights, *inputs, extra=()):
    args = ["export", "--framework", "torch", "--model", model, "--weights", weights, "-o", out]
    for spec in inputs or ("x:2x16",):
        args += ["--input", spec]
    return qx(*args, *extra)


def _no_output(tmp_path, out):
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}") for p in tmp_path.iterdir()), list(tmp_path.iterdir())


def test_missing_model_file(qx, tmp_path, mlp_weights):
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, tmp_path / "nope.py:MLP", mlp_weights), "nope.py", "not found")
    _no_output(tmp_path, out)


def test_missing_weights_file(qx, tmp_path):
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", tmp_path / "gone.safetensors"), "gone.safetensors", "not found")
    _no_output(tmp_path, out)


def test_wrong_module_path(qx, tmp_path, mlp_weights):
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, "no_such_pkg.models:MLP", mlp_weights), "no_such_pkg.models")
    _no_output(tmp_path, out)


def test_wrong_name_lists_available_classes(qx, tmp_path, mlp_weights):
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:Resnet", mlp_weights), "'Resnet'", "MLP", "EncoderBlock")
    _no_output(tmp_path, out)


def test_state_dict_key_mismatch_lists_missing_and_unexpected(qx, tmp_path):
    state = zoo.MLP().state_dict()
    state["extra.weight"] = state.pop("fc2.weight")
    weights = tmp_path / "w.pt"
    torch.save(state, weights)
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", weights), "missing keys: fc2.weight", "unexpected keys: extra.weight")
    _no_output(tmp_path, out)


def test_state_dict_shape_mismatch(qx, tmp_path):
    weights = save_trained_looking_weights(zoo.MLP(hidden=8), tmp_path / "w.safetensors")
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", weights), "fc1.weight")
    _no_output(tmp_path, out)


def test_torchscript_archive_as_weights_is_refused(qx, tmp_path):
    archive = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(zoo.MLP()), str(archive))
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", archive), "TorchScript", "state_dict")
    _no_output(tmp_path, out)


def test_torchscript_module_from_factory_is_refused(qx, tmp_path, mlp_weights):
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:scripted_mlp", mlp_weights), "TorchScript", "non-JIT")
    _no_output(tmp_path, out)


def test_shape_the_model_rejects(qx, tmp_path, mlp_weights):
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", mlp_weights, "x:2x17"), "rejects the inputs", "x:2x17", "--input")
    _no_output(tmp_path, out)


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_pickle_that_would_run_code_is_refused_and_never_runs(qx, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "evil.pt"
    torch.save({"fc1.weight": _Payload()}, weights, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", weights), "evil.pt", "weights_only")
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    _no_output(tmp_path, out)


@pytest.mark.parametrize("spec, fragment", [
    ("x", "NAME:SHAPE"), ("x:2xq", "positive integers"), ("x:2x16:float7", "unknown dtype"), ("x:0x16", "positive"),
])
def test_bad_input_spec(qx, tmp_path, mlp_weights, spec, fragment):
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", mlp_weights, spec), fragment)
    _no_output(tmp_path, out)


def test_bad_model_kwargs_and_tolerance(qx, tmp_path, mlp_weights):
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", mlp_weights, extra=("--model-kwargs", "{bad")), "--model-kwargs")
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", mlp_weights, extra=("--tolerance", "x")), "--tolerance")
    _no_output(tmp_path, out)


def test_corrupt_safetensors(qx, tmp_path):
    weights = tmp_path / "broken.safetensors"
    weights.write_bytes(b"\xff" * 64)
    out = tmp_path / "m.onnx"
    assert_user_error(_export(qx, out, f"{ZOO}:MLP", weights), "broken.safetensors")
    _no_output(tmp_path, out)


def test_debug_shows_traceback_and_keeps_the_exit_code(qx, tmp_path, mlp_weights):
    args = ("export", "--framework", "torch", "--model", f"{ZOO}:Nope", "--weights", mlp_weights,
            "--input", "x:2x16", "-o", tmp_path / "m.onnx")
    plain, debug = qx(*args), qx("--debug", *args)
    assert plain.code == debug.code == 2, (plain, debug)
    assert "Traceback" in debug.err and "Traceback" not in plain.err
    assert debug.err.strip().splitlines()[-1] == plain.err.strip()


def test_debug_keeps_exit_3_of_an_internal_error(qx, tmp_path, monkeypatch):
    import mlperf_qx.quantize as quantize

    def broken(*_):
        raise RuntimeError("a library failed")

    monkeypatch.setattr(quantize, "quantize_model", broken)
    args = ("quantize", tmp_path / "m.onnx", "--calib", tmp_path, "-o", tmp_path / "o.onnx")
    plain, debug = qx(*args), qx("--debug", *args)
    assert plain.code == debug.code == 3, (plain, debug)
    assert "Traceback" in debug.err and "RuntimeError: a library failed" in debug.err


def test_inputs_are_not_modified(qx, tmp_path, mlp_weights):
    before = mlp_weights.read_bytes(), ZOO.read_bytes()
    result = _export(qx, tmp_path / "m.onnx", f"{ZOO}:MLP", mlp_weights)
    assert result.code == 0, result
    assert (mlp_weights.read_bytes(), ZOO.read_bytes()) == before


def test_exporter_failure_keeps_the_cause_without_colour_codes():
    from mlperf_qx.importers.torch_export import _failure

    try:
        try:
            raise ValueError("Cannot view a tensor with shape [16, 16, 2, 16] as (16, 16, 32)!\nWhile executing ...")
        except ValueError as inner:
            raise RuntimeError("Failed to decompose the FX graph. \x1b[96mThis is step 2/3\x1b[0m of exporting. "
                               "Next steps:\n- Create an issue") from inner
    except RuntimeError as exc:
        text = _failure(exc)
    assert "\x1b" not in text and "Next steps" not in text and "\n" not in text
    assert text.startswith("Failed to decompose the FX graph. This is step 2/3 of exporting.")
    assert "caused by ValueError: Cannot view a tensor with shape [16, 16, 2, 16] as (16, 16, 32)!" in text
