"""Bad input to qx quantize: one line naming the sample/tensor/file, exit 2, no output."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import assert_user_error


def _tiny_model(path, shape=(1, 3, 4, 4)):
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((2, shape[1], 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], 2, *shape[2:]])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def _sample_folder(folder, count, seed, growing=False):
    """``count`` samples s0, s1, .. for the tiny model; ``growing``: sample i is scaled by i + 1."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        sample = rng.standard_normal((3, 4, 4))
        np.save(folder / f"s{i}.npy", (sample * (i + 1) if growing else sample).astype(np.float32))
    return folder


@pytest.fixture
def setup(tmp_path):
    return _tiny_model(tmp_path / "tiny.onnx"), _sample_folder(tmp_path / "calib", 4, seed=1), tmp_path / "out.onnx"


def _run(qx, model, calib, out, *extra):
    return qx("quantize", model, "--calib", calib, "-o", out, *extra)


def test_good_tiny_model_quantizes(qx, setup):
    model, calib, out = setup
    result = _run(qx, model, calib, out)
    assert result.code == 0, result
    assert out.exists()


def test_nan_in_a_sample_names_it(qx, setup):
    model, calib, out = setup
    bad = np.zeros((3, 4, 4), np.float32)
    bad[0, 0, 0] = np.nan
    np.save(calib / "s2.npy", bad)
    assert_user_error(_run(qx, model, calib, out), "'s2'", "NaN")
    assert not out.exists()


def test_empty_calibration_folder(qx, setup, tmp_path):
    model, _, out = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(_run(qx, model, empty, out), "empty")
    assert not out.exists()


def test_list_ids_missing_from_data(qx, setup, tmp_path):
    model, calib, out = setup
    listing = tmp_path / "list.txt"
    listing.write_text("s0\ns1.npy\nghost_7\n")
    assert_user_error(_run(qx, model, calib, out, "--calib-list", listing), "ghost_7", "no .npy/.npz sample")
    assert not out.exists()


def test_list_with_extensions_and_samples_limit_work(qx, setup, tmp_path):
    model, calib, out = setup
    listing = tmp_path / "list.txt"
    listing.write_text("s3.npy\ns1\ns0\n")
    result = _run(qx, model, calib, out, "--calib-list", listing, "--samples", "2", "--json")
    assert result.code == 0, result
    assert '"samples": 2' in result.out


def test_shape_mismatch_names_sample_and_input(qx, setup):
    model, calib, out = setup
    np.save(calib / "s1.npy", np.zeros((3, 5, 4), np.float32))
    assert_user_error(_run(qx, model, calib, out), "'s1'", "'x'", "3x5x4")


def test_dtype_mismatch(qx, setup):
    model, calib, out = setup
    np.save(calib / "s0.npy", np.zeros((3, 4, 4), np.float64))
    assert_user_error(_run(qx, model, calib, out), "'s0'", "float64", "float32")


def test_already_quantized_model_is_refused(qx, setup, tmp_path):
    model, calib, out = setup
    assert _run(qx, model, calib, out).code == 0
    again = tmp_path / "again.onnx"
    assert_user_error(_run(qx, out, calib, again), "already quantized", "FP32")
    assert not again.exists()


def test_corrupt_onnx_file(qx, setup, tmp_path):
    _, calib, out = setup
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage" * 10)
    assert_user_error(_run(qx, broken, calib, out), "broken.onnx")
    assert not out.exists()


def test_pickled_npy_is_refused(qx, setup):
    model, calib, out = setup
    np.save(calib / "s0.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_user_error(_run(qx, model, calib, out), "'s0'")


def test_bad_flags(qx, setup, tmp_path):
    model, calib, out = setup
    assert_user_error(_run(qx, model, calib, out, "--method", "magic"), "--method")
    assert_user_error(_run(qx, model, calib, out, "--method", "percentile", "--percentile", "0"), "--percentile 0")
    assert_user_error(qx("quantize", model, "--calib", calib, "-o", model), "overwrite")
    corrupt_cache = tmp_path / "cache.json"
    corrupt_cache.write_text("{not json")
    assert_user_error(_run(qx, model, calib, out, "--cache", corrupt_cache), "--cache")
    assert not out.exists()


def test_preprocess_hook_and_npz_input(qx, setup, tmp_path):
    model, _, out = setup
    stacked = tmp_path / "calib.npz"
    np.savez(stacked, x=np.random.default_rng(2).standard_normal((5, 3, 4, 4)).astype(np.float64))
    hook = tmp_path / "prep.py"
    hook.write_text("import numpy as np\n\ndef to_float32(x):\n    return np.asarray(x, dtype=np.float32) * 0.5\n")
    result = qx("quantize", model, "--calib", stacked, "--preprocess", f"{hook}:to_float32", "-o", out, "--json")
    assert result.code == 0, result
    assert '"samples": 5' in result.out


def test_inputs_are_untouched(qx, setup):
    model, calib, out = setup
    before = model.read_bytes(), sorted((p.name, p.read_bytes()) for p in calib.iterdir())
    assert _run(qx, model, calib, out).code == 0
    assert (model.read_bytes(), sorted((p.name, p.read_bytes()) for p in calib.iterdir())) == before


def test_activation_overflowing_to_infinity_is_named(qx, setup):
    model, calib, out = setup
    np.save(calib / "s2.npy", np.full((3, 4, 4), 3e38, np.float32))  # finite input, infinite Conv output
    result = _run(qx, model, calib, out)
    assert_user_error(result, "activation", "infinite")
    assert not out.exists()


def test_an_opset_before_quantize_linear_is_refused_with_the_conversion_to_do(qx, setup):
    """Opset 9 has no QuantizeLinear: refused before any work (it used to calibrate, then fail as
    an internal error when the int8 model was checked); opset 10, where it arrives, quantizes."""
    model, calib, out = setup
    proto = onnx.load(str(model))
    for version, ir_version in ((9, 4), (10, 5)):
        proto.opset_import[0].version, proto.ir_version = version, ir_version
        onnx.save(proto, str(model))
        result = _run(qx, model, calib, out)
        if version == 9:
            assert_user_error(result, "tiny.onnx", "opset 9", "version_converter")
            assert not out.exists()
        else:
            assert result.code == 0, result
            assert out.exists()
