"""qx verify-equivalence: real LoadGen runs, MLPerf-format accuracy scripts, both verdicts, and
tampered candidates failing the right intensional check."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import CALIB_LIST, REPO, assert_user_error

SCRIPTS = REPO / "src" / "mlperf_qx" / "accuracy"


def _verify(qx, digits, candidate, out, *extra, mode="intensional"):
    return qx("verify-equivalence", "--reference", digits["fp32"], "--candidate", candidate,
              "--dataset", digits["data"] / "validation", "--labels", digits["data"] / "validation_map.txt",
              "--calib-list", CALIB_LIST, "--mode", mode, "--out", out, *extra)


def _report(out):
    return json.loads((out / "report.json").read_text())


def _failed_checks(out):
    return {c["name"] for c in _report(out)["intensional"]["checks"] if not c["passed"]}


def test_honest_int8_passes_both_verdicts_under_loadgen(qx, digits, tmp_path):
    out = tmp_path / "verify"
    result = _verify(qx, digits, digits["int8"], out, "--mode", "both", "--duration-ms", "300", mode="both")
    assert result.code == 0, result.out + result.err
    assert result.out.strip().splitlines()[-1] == "PASSED"
    for role in ("reference", "candidate"):
        for run in ("accuracy", "performance/run_1"):  # the layout MLPerf's compliance scripts read
            for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json"):
                assert (out / role / run / name).exists(), (role, run, name)
    report = _report(out)
    ext = report["extensional"]
    assert ext["candidate"]["score"]["figures"]["total"] == 500
    assert ext["reference"]["score"]["value"] > 95
    assert ext["runtime_agreement"] == {}  # onnxruntime answered: nothing to compare with
    assert ext["response"] == {"outputs": ["output"], "dtype": "float32", "layout": "argmax of 'output', one value",
                               "label_offset": 0}
    for role in ("reference", "candidate"):
        performance = ext[role]["performance_run"]
        assert performance["samples_per_second"] > 0  # parsed from 'Samples per second: N'
        assert performance["effective_mode"] == "PerformanceOnly"
        assert ext[role]["accuracy_run"]["effective_mode"] == "AccuracyOnly"
        # A quick run is reported as one, never as a submission result.
        assert not performance["valid_for_submission"]
        assert any("quick check" in p for p in performance["submission_problems"])
        # A quick run is 3 performance runs of each model; the reported one is the median.
        figures = [run["samples_per_second"] for run in ext[role]["performance_repeats"]]
        assert len(figures) == 3 and performance["samples_per_second"] == sorted(figures)[1]
        assert performance["folder"] == str(out / role / "performance" / f"run_{figures.index(sorted(figures)[1]) + 1}")
    # ... run alternating: reference, candidate, candidate, reference, reference, candidate.
    finished = {(role, n): (out / role / "performance" / f"run_{n}" / "mlperf_log_summary.txt").stat().st_mtime_ns
                for role in ("reference", "candidate") for n in (1, 2, 3)}
    assert sorted(finished, key=finished.get) == [("reference", 1), ("candidate", 1), ("candidate", 2), ("reference", 2), ("reference", 3),
                     ("candidate", 3)]
    assert "Performance: 3 LoadGen runs of each model" in (out / "report.md").read_text()
    assert (out / "report.md").read_text().strip().splitlines()[-1] == "PASSED"
    for png in ("layer_sqnr.png", "accuracy_and_latency.png", "output_error_histogram.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # The standalone accuracy script, run as MLPerf runs accuracy-imagenet.py (default dtype float32),
    # agrees with the verdict.
    line = subprocess.run([sys.executable, str(SCRIPTS / "classification.py"), "--mlperf-accuracy-file",
                           str(out / "candidate" / "accuracy" / "mlperf_log_accuracy.json"), "--imagenet-val-file",
                           str(digits["data"] / "validation_map.txt")],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert line == ext["candidate"]["score"]["line"]
    assert line == _mlperf_accuracy_imagenet(out / "candidate" / "accuracy" / "mlperf_log_accuracy.json",
                                             digits["data"] / "validation_map.txt")
    agreement = subprocess.run([sys.executable, str(SCRIPTS / "agreement.py"), "--reference-accuracy-file",
                                str(out / "reference" / "accuracy" / "mlperf_log_accuracy.json"),
                                "--candidate-accuracy-file", str(out / "candidate" / "accuracy" / "mlperf_log_accuracy.json"),
                                "--dtype", "float32"], capture_output=True, text=True)
    assert agreement.returncode == 0 and "top1_agreement_per_position=" in agreement.stdout


def test_openvino_backend_answers_loadgen_and_both_verdicts_pass(qx, digits, tmp_path):
    """--backend openvino: OpenVINO runs reference and candidate under LoadGen and its answers are
    scored; the intensional verdict is still computed on onnxruntime; the reports name the runtime."""
    out = tmp_path / "verify"
    result = _verify(qx, digits, digits["int8"], out, "--backend", "openvino", "--duration-ms", "300", mode="both")
    assert result.code == 0, result.out + result.err
    ext = _report(out)["extensional"]
    for role in ("reference", "candidate"):
        assert ext[role]["backend"].startswith("OpenVINO "), ext[role]["backend"]
        assert "THROUGHPUT hint" in ext[role]["backend"], ext[role]["backend"]  # Offline: OpenVINO's streams
        assert ext[role]["performance_run"]["samples_per_second"] > 0
    assert ext["candidate"]["score"]["figures"]["total"] == 500 and ext["accuracy_passed"]
    # How far OpenVINO's answers are from onnxruntime's on the same files, measured: FP32 to float
    # rounding, int8 close (digits: both quantize the same grid, OpenVINO rounding on its own kernels).
    agreement = ext["runtime_agreement"]
    assert agreement["reference"]["samples"] == 32 and agreement["reference"]["outputs"] == ["output"]
    assert agreement["reference"]["min_cosine"] > 0.99999, agreement
    assert 0.99 < agreement["candidate"]["min_cosine"] <= agreement["candidate"]["mean_cosine"] <= 1.0 + 1e-9, agreement
    markdown = (out / "report.md").read_text()
    assert "candidate on OpenVINO" in markdown and "onnxruntime's exact reference numerics" in markdown
    assert "- candidate: cosine min" in markdown
    wrong = _verify(qx, digits, digits["int8"], tmp_path / "w", "--backend", "tensorrt", mode="both")
    assert_user_error(wrong, "--backend", "onnxruntime, openvino")


def _mlperf_accuracy_imagenet(log, val_map, dtype=np.float32):
    """The behaviour of MLPerf's accuracy-imagenet.py with its defaults, written out: the response
    decoded as float32, ``int(data[0])`` compared with the val_map label, de-duplicated by qsl_idx."""
    labels = [int(line.split()[1]) for line in val_map.read_text().splitlines() if line.strip()]
    seen, good = set(), 0
    for entry in json.loads(log.read_text()):
        if entry["qsl_idx"] in seen:
            continue
        seen.add(entry["qsl_idx"])
        good += int(np.frombuffer(bytes.fromhex(entry["data"]), dtype)[0]) == labels[entry["qsl_idx"]]
    return f"accuracy={100.0 * good / len(seen):.3f}%, good={good}, total={len(seen)}"


def test_unquantized_candidate_fails_provenance_and_its_qdq_check_checked_nothing(qx, digits, tmp_path):
    """An FP32 'candidate' has no quantization: the provenance fails; the Q/DQ check had nothing to
    check and says so (NOT CHECKED), neither a FAIL nor a PASS over 0 parameter sets."""
    out = tmp_path / "v"
    result = _verify(qx, digits, digits["fp32"], out)
    assert result.code == 1
    assert "calibration_provenance" in _failed_checks(out)
    qdq = next(c for c in _report(out)["intensional"]["checks"] if c["name"] == "qdq_symmetric_int8")
    assert qdq["status"] == "NOT CHECKED" and "holds no int8 op" in qdq["detail"], qdq


def _tamper(digits, tmp_path, edit):
    model = onnx.load(str(digits["int8"]))
    edit(model)
    path = tmp_path / "tampered.onnx"
    onnx.save(model, str(path))
    return path


def _initializer(model, suffix):
    return next(t for t in model.graph.initializer if t.name.endswith(suffix) and t.data_type == onnx.TensorProto.INT8
                and len(t.dims) == 4)


def _set(model, tensor, array):
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))


def _edit_first_conv_weight(edit_values):
    """A model edit that changes the first int8 conv weight in place (``edit_values`` gets it flat)."""
    def edit(model):
        weight = _initializer(model, "_quantized")
        values = numpy_helper.to_array(weight).copy()
        edit_values(values.reshape(-1))
        _set(model, weight, values)
    return edit


def test_weight_moved_past_half_a_step_fails_half_step_check(qx, digits, tmp_path):
    def edit(flat):
        flat[3] = np.int8(flat[3] + 2 if flat[3] < 120 else flat[3] - 2)

    out = tmp_path / "v"
    assert _verify(qx, digits, _tamper(digits, tmp_path, _edit_first_conv_weight(edit)), out).code == 1
    assert "weights_half_step" in _failed_checks(out)


def test_pruned_weight_fails_pruning_check(qx, digits, tmp_path):
    def edit(flat):
        flat[np.argmax(np.abs(flat))] = 0

    out = tmp_path / "v"
    assert _verify(qx, digits, _tamper(digits, tmp_path, _edit_first_conv_weight(edit)), out).code == 1
    assert "no_pruning" in _failed_checks(out)


def test_coarse_activation_scale_fails_layer_numerics_where_it_is(qx, digits, tmp_path):
    """One activation's Q/DQ scale made 64x coarser (two levels left): every other check passes, the layer reading
    it fails on its own (teacher-forced) error, not only through the drift after it."""
    def edit(model):
        quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
        scale_name = quantizers[1].input[1]
        scale = next(t for t in model.graph.initializer if t.name == scale_name)
        _set(model, scale, numpy_helper.to_array(scale) * np.float32(64))

    out = tmp_path / "v"
    assert _verify(qx, digits, _tamper(digits, tmp_path, edit), out).code == 1
    assert _failed_checks(out) == {"layer_numerics"}
    check = next(c for c in _report(out)["intensional"]["checks"] if c["name"] == "layer_numerics")
    assert "each layer on the reference's inputs" in check["measured"] and "end to end" in check["detail"]


def test_nonzero_zero_point_fails_symmetry(qx, digits, tmp_path):
    def edit(model):
        zero = next(t for t in model.graph.initializer if t.name == "image_zero_point")
        _set(model, zero, np.array(3, np.int8))

    out = tmp_path / "v"
    assert _verify(qx, digits, _tamper(digits, tmp_path, edit), out).code == 1
    assert "qdq_symmetric_int8" in _failed_checks(out)


def test_per_channel_scale_fails_symmetry(qx, digits, tmp_path):
    def edit(model):
        weight = _initializer(model, "_quantized")
        scale = next(t for t in model.graph.initializer if t.name == weight.name.replace("_quantized", "_scale"))
        zero = next(t for t in model.graph.initializer if t.name == weight.name.replace("_quantized", "_zero_point"))
        _set(model, scale, np.full(weight.dims[0], numpy_helper.to_array(scale), np.float32))
        _set(model, zero, np.zeros(weight.dims[0], np.int8))
        for node in model.graph.node:
            if node.op_type == "DequantizeLinear" and node.input[1] == scale.name:
                node.attribute.append(onnx.helper.make_attribute("axis", 0))

    out = tmp_path / "v"
    assert _verify(qx, digits, _tamper(digits, tmp_path, edit), out).code == 1
    assert "qdq_symmetric_int8" in _failed_checks(out)


def _provenance(out):
    return next(c for c in _report(out)["intensional"]["checks"] if c["name"] == "calibration_provenance")


def test_calibration_on_accuracy_set_ids_follows_mlperf_rule(qx, digits, tmp_path):
    """MLPerf's ResNet-50 calibration list names ImageNet validation images: overlap is information,
    the rule is that the recorded list is exactly the one given; --forbid-overlap is the strict form."""
    val_map = digits["data"] / "validation_map.txt"
    validation = [line.split() for line in val_map.read_text().splitlines()]
    # option_2's layout: '<raw file name> <label>', the preprocessed sample being '<stem>.npy'.
    overlap = tmp_path / "cal_list_option_2.txt"
    overlap.write_text("".join(f"{name}.JPEG {label}\n" for name, label in validation[:40]))
    int8 = tmp_path / "int8_on_val.onnx"
    assert qx("quantize", digits["fp32"], "--calib", digits["data"] / "validation", "--calib-list", overlap,
              "-o", int8).code == 0

    def verify(calib_list, *extra):
        out = tmp_path / f"v{len(list(tmp_path.iterdir()))}"
        code = qx("verify-equivalence", "--reference", digits["fp32"], "--candidate", int8, "--dataset",
                  digits["data"] / "validation", "--labels", val_map, "--calib-list", calib_list,
                  "--mode", "intensional", "--out", out, *extra).code
        return code, _provenance(out)

    code, check = verify(overlap)
    assert check["passed"] and "40 in the accuracy set" in check["measured"], check
    assert "information" in check["detail"] and "MLPerf" in check["detail"]
    # The same ids written as option_1 (names only, another file hash) are the same calibration.
    option_1 = tmp_path / "cal_list_option_1.txt"
    option_1.write_text("".join(f"{name}.JPEG\n" for name, _ in validation[:40]))
    assert verify(option_1)[1]["passed"]
    code, check = verify(overlap, "--forbid-overlap")
    assert code == 1 and not check["passed"] and "--forbid-overlap" in check["detail"]
    code, check = verify(CALIB_LIST)
    assert code == 1 and not check["passed"] and "not the list the candidate was calibrated on" in check["detail"]
    shorter = tmp_path / "first_20.txt"
    shorter.write_text("".join(f"{name}\n" for name, _ in validation[:20]))
    assert not verify(shorter)[1]["passed"]


def test_part_of_the_list_is_not_the_list(qx, digits, tmp_path):
    partial = tmp_path / "partial.onnx"
    assert qx("quantize", digits["fp32"], "--calib", digits["data"] / "calibration_candidates", "--calib-list",
              CALIB_LIST, "--samples", "50", "-o", partial).code == 0
    out = tmp_path / "v"
    assert _verify(qx, digits, partial, out).code == 1
    assert "50 of the" in _provenance(out)["detail"]


@pytest.mark.parametrize("change", ["add", "remove"])
def test_op_added_or_removed_fails_graph_check(qx, digits, tmp_path, change):
    def edit(model):
        nodes = list(model.graph.node)
        relu = next(n for n in nodes if n.op_type == "Relu")
        if change == "add":
            position = nodes.index(relu)
            extra = onnx.helper.make_node("Relu", [relu.output[0]], [relu.output[0] + "_again"], name="extra_relu")
            for node in nodes[position + 1:]:
                for i, name in enumerate(node.input):
                    if name == relu.output[0]:
                        node.input[i] = extra.output[0]
            model.graph.node.insert(position + 1, extra)
        else:
            for node in nodes:
                for i, name in enumerate(node.input):
                    if name == relu.output[0]:
                        node.input[i] = relu.input[0]
            model.graph.node.remove(relu)

    out = tmp_path / "v"
    assert _verify(qx, digits, _tamper(digits, tmp_path, edit), out).code == 1
    assert "graph_equivalent" in _failed_checks(out)


def test_qoperator_candidate_passes_intensional(qx, digits, tmp_path):
    qop = tmp_path / "qop.onnx"
    assert qx("quantize", digits["fp32"], "--calib", digits["data"] / "calibration_candidates", "--calib-list",
              CALIB_LIST, "--format", "qoperator", "-o", qop).code == 0
    out = tmp_path / "v"
    result = _verify(qx, digits, qop, out)
    assert result.code == 0, result.out


def test_bad_inputs(qx, digits, tmp_path):
    out = tmp_path / "v"
    other = tmp_path / "other.onnx"
    model = onnx.load(str(digits["fp32"]))
    model.graph.input[0].name = "pixels"
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == "image":
                node.input[i] = "pixels"
    onnx.save(model, str(other))
    assert_user_error(_verify(qx, digits, other, out), "pixels", "image")
    bad_labels = tmp_path / "labels.txt"
    bad_labels.write_text("digits_9999 3\n")
    assert_user_error(qx("verify-equivalence", "--reference", digits["fp32"], "--candidate", digits["int8"],
                         "--dataset", digits["data"] / "validation", "--labels", bad_labels, "--out", out),
                      "digits_9999")
    assert_user_error(_verify(qx, digits, digits["int8"], out, "--max-batchsize", "0"), "--max-batchsize")
    assert_user_error(_verify(qx, digits, digits["int8"], out, "--performance-runs", "0"), "--performance-runs")
    assert_user_error(_verify(qx, digits, digits["int8"], out, "--stall-timeout", "0"), "--stall-timeout")
    bad_log = tmp_path / "log.json"
    bad_log.write_text("[{not json")
    done = subprocess.run([sys.executable, str(SCRIPTS / "classification.py"), "--mlperf-accuracy-file", str(bad_log),
                           "--imagenet-val-file", str(digits["data"] / "validation_map.txt")], capture_output=True,
                          text=True)
    assert done.returncode == 2 and done.stderr.startswith("error:") and "Traceback" not in done.stderr


def test_torch_framework_reference_is_exported_checked_and_run_under_loadgen(qx, digits, tmp_path):
    out = tmp_path / "v"
    result = qx("verify-equivalence", "--reference", f"{REPO}/examples/digits/model_torch.py:DigitsNet",
                "--reference-weights", digits["folder"] / "digits_torch.safetensors", "--input", "image:1x1x8x8",
                "--candidate", digits["int8"], "--dataset", digits["data"] / "validation",
                "--labels", digits["data"] / "validation_map.txt", "--calib-list", CALIB_LIST,
                "--samples", "200", "--duration-ms", "300", "--out", out)
    assert result.code == 0, result.out + result.err
    report = _report(out)
    assert report["extensional"]["reference"]["backend"] == "torch"
    assert (out / "reference_export.onnx").exists()
    assert report["intensional"]["passed"]
