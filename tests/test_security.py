"""Hostile files: nothing executes, nothing escapes its folder, every failure is one clear line."""

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ZOO, assert_user_error
from test_quantize_errors import _sample_folder, _tiny_model

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_clean_exit(result):
    """Success, or exit 2 (bad input) or 1 (quantize measured that no op can stay int8) with one
    line; never a traceback or another code."""
    assert result.code in (0, 1, 2), result
    if result.code:
        lines = [line for line in result.err.strip().splitlines() if not line.startswith("qx: ")]  # progress log
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.err, result.err


# --- safetensors headers ------------------------------------------------------------------------

def _safetensors(path, header: dict, data: bytes):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize("header, data, fragment", [
    ({"fc1.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "fc1.bias": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16, "overlap"),
    ({"fc1.weight": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"\0" * 16, "outside"),
    ({"fc1.weight": {"dtype": "Q99", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16, "dtype"),
    ({"fc1.weight": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, b"\0" * 16, "shape"),
])
def test_malformed_safetensors_headers_are_refused(qx, tmp_path, header, data, fragment):
    weights = _safetensors(tmp_path / "w.safetensors", header, data)
    result = qx("export", "--framework", "torch", "--model", f"{ZOO}:MLP", "--weights", weights,
                "--input", "x:2x16", "-o", tmp_path / "m.onnx")
    assert_user_error(result, "w.safetensors", fragment)


def test_header_length_past_the_file(qx, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    assert_user_error(qx("export", "--framework", "torch", "--model", f"{ZOO}:MLP", "--weights", weights,
                         "--input", "x:2x16", "-o", tmp_path / "m.onnx"), "header length")


# --- ONNX external data -------------------------------------------------------------------------

def _external_model(folder, name="m.onnx"):
    model = onnx.load(str(_tiny_model(folder / "src.onnx")))
    path = folder / name
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    return path


def _set_location(path, location=None, length=None):
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and location is not None:
                entry.value = location
            if entry.key == "length" and length is not None:
                entry.value = str(length)
    onnx.save(model, str(path))


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "link.bin"])
def test_external_data_outside_the_folder_is_refused(qx, tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    (folder / "link.bin").symlink_to(tmp_path / "secret.bin")
    path = _external_model(folder)
    _set_location(path, location=location)
    assert_user_error(qx("inspect", path), "outside the model's folder")
    assert_user_error(qx("quantize", path, "--calib", tmp_path, "-o", tmp_path / "q.onnx"), "outside")


def test_external_data_declaring_more_than_its_file(qx, tmp_path):
    path = _external_model(tmp_path)
    _set_location(path, length=10**9)
    assert_user_error(qx("quantize", path, "--calib", tmp_path, "-o", tmp_path / "q.onnx"), "declares bytes")


def test_unknown_opset(qx, tmp_path):
    model = onnx.load(str(_tiny_model(tmp_path / "t.onnx")))
    model.opset_import[0].version = 99
    onnx.save(model, str(tmp_path / "future.onnx"))
    assert_user_error(qx("inspect", tmp_path / "future.onnx"), "opset 99")


def test_graph_failing_the_checker(qx, tmp_path):
    model = onnx.load(str(_tiny_model(tmp_path / "t.onnx")))
    model.graph.node[1].input[0] = "nowhere"
    onnx.save(model, str(tmp_path / "broken.onnx"))
    calib = tmp_path / "calib"
    calib.mkdir()
    np.save(calib / "a.npy", np.zeros((3, 4, 4), np.float32))
    assert_user_error(qx("quantize", tmp_path / "broken.onnx", "--calib", calib, "-o", tmp_path / "q.onnx"), "checker")


# --- Keras custom objects -----------------------------------------------------------------------

def test_keras_custom_object_needs_its_module_named(qx, tmp_path):
    keras = pytest.importorskip("keras")
    module = tmp_path / "custom_layers.py"
    module.write_text(
        "import keras\n\n"
        "@keras.saving.register_keras_serializable(package='qxtest')\n"
        "class Doubler(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return x * 2.0\n")
    sys.path.insert(0, str(tmp_path))
    import custom_layers

    inputs = keras.Input((3,), name="x")
    keras.Model(inputs, custom_layers.Doubler()(inputs)).save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().clear()  # a fresh process would not know the class
    out = tmp_path / "c.onnx"
    assert_user_error(qx("export", "--framework", "tf", "--model", tmp_path / "custom.keras", "-o", out),
                      "custom object", "--custom-objects")
    assert not out.exists()
    result = qx("export", "--framework", "tf", "--model", tmp_path / "custom.keras", "--custom-objects", module, "-o", out)
    assert result.code == 0, result


# --- atomic outputs under SIGKILL -----------------------------------------------------------------

def test_killed_quantize_leaves_previous_output_or_complete_new_one(tmp_path):
    model = _tiny_model(tmp_path / "tiny.onnx")
    calib = _sample_folder(tmp_path / "calib", 8, seed=0)
    out = tmp_path / "out.onnx"
    previous = b"previous complete output"
    command = [sys.executable, "-m", "mlperf_qx.cli.main", "quantize", str(model), "--calib", str(calib), "-o", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    full = time.perf_counter() - started
    fresh = out.read_bytes()
    randomness = random.Random(0)
    for _ in range(6):
        out.write_bytes(previous)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(randomness.uniform(0.2, full))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert out.read_bytes() in (previous, fresh)
    assert model.read_bytes() == _tiny_model(tmp_path / "again.onnx").read_bytes()
    # The next run removes the staging folders the killed runs left behind.
    subprocess.run(command, check=True, capture_output=True)
    assert out.read_bytes() == fresh
    assert not list(tmp_path.glob(".out.onnx.*.tmp"))


def test_staging_folders_of_live_or_unknown_owners_are_kept(tmp_path):
    from mlperf_qx.atomic import write_text_atomic

    out = tmp_path / "out.txt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folders = {}
    for label, owner in (("dead", f"{socket.gethostname()}\n{dead.pid}\n"), ("live", f"{socket.gethostname()}\n{os.getpid()}\n"),
                         ("other_host", f"elsewhere.example\n{dead.pid}\n"), ("no_owner", None)):
        folder = tmp_path / f".out.txt.{label}.tmp"
        folder.mkdir()
        if owner is not None:
            (folder / ".qx-owner").write_text(owner)
        folders[label] = folder
    write_text_atomic(out, "done")
    assert out.read_text() == "done"
    assert {label for label, folder in folders.items() if folder.exists()} == {"live", "other_host", "no_owner"}


# --- fuzzing ------------------------------------------------------------------------------------

def test_non_utf8_op_type_is_a_user_error(qx, tmp_path):
    """Found by the fuzz test below: a flipped byte inside an op type makes protobuf return bytes,
    which crashed inspect (sorting str against bytes)."""
    original = _tiny_model(tmp_path / "ok.onnx").read_bytes()
    path = tmp_path / "flipped.onnx"
    path.write_bytes(original[:18] + bytes([original[18] ^ 128]) + original[19:])
    result = qx("inspect", path)
    assert result.code == 2 and "not UTF-8 text" in result.err, result


def test_non_utf8_graph_name_is_a_user_error(qx, tmp_path):
    """Drawn by the fuzz test on a fresh clone (issue 20): a corrupt byte in the graph's name got
    past the node check and ended in exit 3 inside onnx_ir's serializer."""
    model = onnx.load(str(_tiny_model(tmp_path / "ok.onnx")))
    model.graph.name = "graph_name_here"
    raw = model.SerializeToString()
    at = raw.index(b"graph_name_here")
    path = tmp_path / "flipped.onnx"
    path.write_bytes(raw[:at] + bytes([raw[at] ^ 128]) + raw[at + 1:])
    calib = _sample_folder(tmp_path / "calib", 2, 0)
    for result in (qx("inspect", path), qx("quantize", path, "--calib", calib, "-o", tmp_path / "q.onnx")):
        assert_user_error(result, "model.graph.name is not UTF-8 text")
    assert not (tmp_path / "q.onnx").exists()


def test_tensor_data_that_does_not_fit_its_dims_is_a_user_error(qx, tmp_path):
    """Found by the fuzz test below: a flipped bit in a dim (3 -> 2) left a weight's 216 bytes
    under dims 2x2x3x3, and quantize failed with an internal reshape error in constant folding."""
    model = onnx.load(str(_tiny_model(tmp_path / "ok.onnx")))
    weight = next(t for t in model.graph.initializer if t.name == "w")
    weight.raw_data = weight.raw_data + weight.raw_data[:72]
    path = tmp_path / "oversized.onnx"
    onnx.save(model, str(path))
    result = qx("quantize", path, "--calib", _sample_folder(tmp_path / "calib", 2, 0), "-o", tmp_path / "q.onnx")
    assert result.code == 2 and "tensor 'w' holds 288 bytes but its dims [2, 3, 3, 3] need 216" in result.err, result
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("mutate, what", [
    (lambda raw: raw[:-200] + bytes([raw[-200] ^ 0x55]) + raw[-199:], "Bad CRC-32"),
    (lambda raw: raw[:50] + b"\x07" * 4 + raw[50:], "Bad magic number for file header"),
    (lambda raw: raw[:30] + bytes([raw[30] ^ 0x55]) + raw[31:], "differ"),
], ids=["flipped-data", "inserted-bytes", "flipped-name"])
def test_corrupt_npz_members_are_a_user_error(qx, tmp_path, mutate, what):
    """Found by benchmarks/fuzz_campaign.py (seed 20261130): a flipped byte in an .npz's local
    header or in an array's bytes is only found when the member is read, as zipfile.BadZipFile,
    which ended in exit 3."""
    model = _tiny_model(tmp_path / "tiny.onnx")
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((2, 3, 4, 4), np.float32))
    raw = mutate(good.read_bytes())
    for calib in (tmp_path / "bad.npz", tmp_path / "folder" / "s0.npz"):
        calib.parent.mkdir(exist_ok=True)
        calib.write_bytes(raw)
        source = calib if calib.name == "bad.npz" else calib.parent
        result = qx("quantize", model, "--calib", source, "-o", tmp_path / "q.onnx")
        assert_user_error(result, what)
    assert not (tmp_path / "q.onnx").exists()


@FUZZ
@given(data=st.data())
def test_fuzzed_onnx_files_end_cleanly(qx, tmp_path, data):
    original = _tiny_model(tmp_path / "ok.onnx").read_bytes()
    position = data.draw(st.integers(0, len(original) - 1))
    mode = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
    if mode == "truncate":
        corrupted = original[:position]
    elif mode == "flip":
        corrupted = original[:position] + bytes([original[position] ^ data.draw(st.integers(1, 255))]) + original[position + 1:]
    else:
        corrupted = original[:position] + data.draw(st.binary(min_size=1, max_size=16)) + original[position:]
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(corrupted)
    calib = tmp_path / "calib"
    calib.mkdir(exist_ok=True)
    np.save(calib / "a.npy", np.zeros((3, 4, 4), np.float32))
    _assert_clean_exit(qx("inspect", path))
    _assert_clean_exit(qx("quantize", path, "--calib", calib, "-o", tmp_path / "q.onnx"))


@FUZZ
@given(blob=st.binary(max_size=300))
def test_fuzzed_safetensors_end_cleanly(qx, tmp_path, blob):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(blob)
    _assert_clean_exit(qx("export", "--framework", "torch", "--model", f"{ZOO}:MLP", "--weights", weights,
                          "--input", "x:2x16", "-o", tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()


@FUZZ
@given(data=st.data())
def test_fuzzed_npz_lists_and_caches_end_cleanly(qx, tmp_path, data):
    model = _tiny_model(tmp_path / "tiny.onnx")
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((2, 3, 4, 4), np.float32))
    raw = good.read_bytes()
    cut = data.draw(st.integers(0, len(raw)))
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(raw[:cut] + data.draw(st.binary(max_size=8)))
    _assert_clean_exit(qx("quantize", model, "--calib", bad_npz, "-o", tmp_path / "q1.onnx"))
    listing = tmp_path / "list.txt"
    listing.write_bytes(data.draw(st.binary(max_size=64)))
    _assert_clean_exit(qx("quantize", model, "--calib", good, "--calib-list", listing, "-o", tmp_path / "q2.onnx"))
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps(data.draw(st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=10))))
    _assert_clean_exit(qx("quantize", model, "--calib", good, "--cache", cache, "-o", tmp_path / "q3.onnx"))
