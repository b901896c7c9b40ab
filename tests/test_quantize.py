"""qx quantize end to end on trained models: accuracy, exactness of the format, caches, reports."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import CALIB_LIST, ZOO, assert_user_error
from quant_fixtures import export_trained_digits, train_digits_encoder, validation_accuracy, write_digits_data


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A trained digits CNN exported to ONNX, and the data splits."""
    model, data = export_trained_digits(tmp_path_factory.mktemp("digits"), "digits.onnx")
    return {"model": model, "data": data, "calib": data / "calibration_candidates"}


def _quantize(qx, digits, out, *extra):
    result = qx("quantize", digits["model"], "--calib", digits["calib"], "--calib-list", CALIB_LIST, "-o", out, *extra)
    assert result.code == 0, result
    return result


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_every_method_keeps_digits_accuracy(qx, digits, tmp_path, method):
    out = tmp_path / f"{method}.onnx"
    result = _quantize(qx, digits, out, "--method", method, "--json")
    summary = json.loads(result.out)
    assert summary["samples"] == 100
    # 3 of 4: onnxruntime's x86 S8->U8 rewrite skips the Conv reading the residual fork.
    assert summary["onnxruntime_int8_kernels"].get("QLinearConv", 0) >= 3
    assert summary["onnxruntime_int8_kernels"].get("QGemm", 0) == 1
    assert summary["output_sqnr_db"]["output"] > 20
    fp32 = validation_accuracy(digits["model"], digits["data"])
    int8 = validation_accuracy(out, digits["data"])
    assert fp32 - int8 <= 0.005, (method, fp32, int8)


def test_model_is_symmetric_int8_per_tensor_with_int32_bias(qx, digits, tmp_path):
    out = tmp_path / "q.onnx"
    _quantize(qx, digits, out)
    model = onnx.load(str(out))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        scale, zero = inits[node.input[1]], inits[node.input[2]]
        assert scale.shape == () and scale > 0
        assert zero.shape == () and zero == 0
        assert zero.dtype in (np.int8, np.int32)
    biases = [inits[n.input[0]] for n in qdq if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
              and inits[n.input[0]].dtype == np.int32]
    assert len(biases) == 5
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    props = {p.key: p.value for p in model.metadata_props}
    info = json.loads(props["qx.quantization"])
    assert info["method"] == "minmax" and info["calibration_samples"] == 100
    assert len(info["calibration_list_sha256"]) == 64
    assert "ReduceMean" in str(info["fp32_nodes"]) or info["fp32_nodes"]


def test_weights_within_half_a_step_of_fp32(qx, digits, tmp_path):
    out = tmp_path / "q.onnx"
    _quantize(qx, digits, out)
    fp32 = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(digits["model"])).graph.initializer}
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    checked = 0
    for name, weights in fp32.items():
        if f"{name}_quantized" in inits and weights.ndim > 1:
            scale = inits[f"{name}_scale"]
            error = np.abs(inits[f"{name}_quantized"].astype(np.float32) * scale - weights)
            assert error.max() <= scale / 2 * (1 + 1e-6)
            checked += 1
    assert checked == 5


def test_output_is_byte_identical_across_runs(qx, digits, tmp_path):
    _quantize(qx, digits, tmp_path / "a.onnx", "--method", "entropy")
    _quantize(qx, digits, tmp_path / "b.onnx", "--method", "entropy")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_cache_is_reused_and_refused_for_another_model(qx, digits, tmp_path):
    cache = tmp_path / "ranges.json"
    _quantize(qx, digits, tmp_path / "a.onnx", "--method", "percentile", "--cache", cache, "--trt-cache", tmp_path / "trt.cache")
    payload = json.loads(cache.read_text())
    assert payload["method"] == "percentile" and payload["samples"] == 100
    assert all(t["count"] > 0 for t in payload["tensors"].values())
    result = _quantize(qx, digits, tmp_path / "b.onnx", "--method", "percentile", "--cache", cache, "--json")
    assert json.loads(result.out)["cache_used"] is True
    assert (tmp_path / "a.onnx").read_bytes().split(b"qx.quantize_command")[0] != b""
    a, b = onnx.load(str(tmp_path / "a.onnx")), onnx.load(str(tmp_path / "b.onnx"))
    assert [t.raw_data for t in a.graph.initializer] == [t.raw_data for t in b.graph.initializer]
    from mlperf_qx.calibration.cache import parse_trt_cache

    trt = (tmp_path / "trt.cache").read_text()
    assert trt.startswith("TRT-")
    scales = parse_trt_cache(trt)
    assert scales["image"] == pytest.approx(payload["tensors"]["image"]["scale"], rel=1e-6)
    other = tmp_path / "other.onnx"
    other.write_bytes(digits["model"].read_bytes().replace(b"mlperf-qx", b"mlperf-qy"))
    failed = qx("quantize", other, "--calib", digits["calib"], "--cache", cache, "-o", tmp_path / "c.onnx")
    assert_user_error(failed, "--cache", "another model")
    assert not (tmp_path / "c.onnx").exists()


def test_a_cache_computed_otherwise_is_refused_not_recorded_as_this_run_s(qx, digits, tmp_path):
    """Ranges of another --method, other samples or another --holdout would be recorded as this
    run's calibration: refused, naming what differs; the same run again reuses them, held-out count
    included in the record."""
    cache = tmp_path / "ranges.json"
    _quantize(qx, digits, tmp_path / "a.onnx", "--cache", cache, "--target-cosine", "0.9", "--holdout", "20")
    for extra, says in ((["--method", "percentile"], "--method minmax"), (["--samples", "60"], "60 ids"),
                        (["--holdout", "10", "--target-cosine", "0.9"], "10 held out")):
        failed = qx("quantize", digits["model"], "--calib", digits["calib"], "--calib-list", CALIB_LIST,
                    "--cache", cache, "-o", tmp_path / "b.onnx", *extra)
        assert_user_error(failed, "--cache", says)
        assert not (tmp_path / "b.onnx").exists()
    _quantize(qx, digits, tmp_path / "c.onnx", "--cache", cache, "--target-cosine", "0.9", "--holdout", "20")
    assert (tmp_path / "a.onnx").read_bytes().split(b"qx.quantize_command")[0] == \
        (tmp_path / "c.onnx").read_bytes().split(b"qx.quantize_command")[0]
    record = {p.key: p.value for p in onnx.load(str(tmp_path / "c.onnx")).metadata_props}
    assert json.loads(record["qx.quantization"])["held_out_for_precision_search"] == 20


def test_explain_and_exclude(qx, digits, tmp_path):
    result = _quantize(qx, digits, tmp_path / "q.onnx", "--explain", "--exclude", "Gemm")
    assert "ReduceMean" in result.out and "excluded by --exclude" in result.out
    model = onnx.load(str(tmp_path / "q.onnx"))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert not any(i.endswith("_dequantized") for i in gemm.input)


def test_qoperator_agrees_with_qdq_within_one_step(qx, digits, tmp_path):
    from mlperf_qx.quant.runtime_check import run_with_tensors

    _quantize(qx, digits, tmp_path / "qdq.onnx")
    _quantize(qx, digits, tmp_path / "qop.onnx", "--format", "qoperator")
    qdq, qop = onnx.load(str(tmp_path / "qdq.onnx")), onnx.load(str(tmp_path / "qop.onnx"))
    ops = {n.op_type for n in qop.graph.node}
    assert {"QLinearConv", "QLinearAdd"} <= ops
    int8_names = sorted({o for n in qop.graph.node if n.op_type in ("QLinearConv", "QLinearAdd") for o in n.output})
    samples = sorted(digits["calib"].glob("*.npy"))[:8]
    feeds = [{"image": np.load(p)} for p in samples]
    a = run_with_tensors(qdq, feeds, int8_names + ["output"])
    b = run_with_tensors(qop, feeds, int8_names + ["output"])
    for name in int8_names:
        assert b[name].dtype == np.uint8, name  # QOperator activations: uint8 at zero point 128, the same grid
        assert np.abs(a[name].astype(np.int32) - (b[name].astype(np.int32) - 128)).max() <= 1, name
    assert np.argmax(a["output"], 1).tolist() == np.argmax(b["output"], 1).tolist()


def test_report_has_json_markdown_and_plots(qx, digits, tmp_path):
    report = tmp_path / "report"
    _quantize(qx, digits, tmp_path / "q.onnx", "--method", "entropy", "--report", report)
    payload = json.loads((report / "quantization_report.json").read_text())
    assert payload["layers"] and all(row["sqnr_db"] > 15 for row in payload["layers"])
    assert "Per-layer error" in (report / "quantization_report.md").read_text()
    for png in ("layer_sqnr.png", "histograms.png"):
        assert (report / png).read_bytes()[:4] == b"\x89PNG"


def test_trained_encoder_quantizes_close_to_fp32(qx, tmp_path):
    from mlperf_qx.cli.main import main

    data = write_digits_data(tmp_path / "data")
    weights = train_digits_encoder(tmp_path)
    fp32 = tmp_path / "encoder.onnx"
    assert main(["export", "--framework", "torch", "--model", f"{ZOO}:DigitsEncoder", "--weights", str(weights),
                 "--input", "image:1x1x8x8", "-o", str(fp32)]) == 0
    out = tmp_path / "encoder_int8.onnx"
    result = qx("quantize", fp32, "--calib", data / "calibration_candidates", "--calib-list", CALIB_LIST, "-o", out,
                "--method", "percentile", "--json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["output_sqnr_db"]["output"] > 15
    kept = {n["op_type"] for n in summary["nodes"] if not n["quantized"]}
    assert {"Softmax", "LayerNormalization"} <= kept
    quantized = {n["op_type"] for n in summary["nodes"] if n["quantized"]}
    assert {"MatMul", "Gemm", "Add"} & quantized
    assert validation_accuracy(fp32, data) - validation_accuracy(out, data) <= 0.01
