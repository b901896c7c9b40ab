"""Usage errors (a bad, missing or unknown option, argument or command) get qx's one-line answer
like every other user error: exit 2, the command and the option named, no usage box."""

from __future__ import annotations

import pytest

from conftest import assert_user_error


@pytest.mark.parametrize(("args", "fragments"), [
    (["quantize"], ["qx quantize:", "'model'", "qx quantize --help"]),
    (["quantize", "m.onnx", "--bogus"], ["qx quantize:", "--bogus"]),
    (["verify-equivalence", "--reference", "a", "--candidate", "b", "--dataset", "c", "--out", "d",
      "--performance-runs", "abc"], ["qx verify-equivalence:", "'--performance-runs'", "integer"]),
    (["export", "--opset", "seventeen"], ["qx export:", "'--opset'"]),
    (["frobnicate"], ["qx:", "'frobnicate'"]),
])
def test_a_usage_error_is_one_line_naming_the_command_and_what_is_wrong(qx, args, fragments):
    assert_user_error(qx(*args), *fragments)


def test_help_still_answers_and_qx_alone_shows_it(qx):
    assert qx("quantize", "--help").code == 0
    alone = qx()
    assert alone.code == 2 and "verify-equivalence" in alone.out + alone.err


# Where a command writes is checked before any work: an output that is an input, two outputs that
# are one file, a folder where a file goes (and back), a path under a file, an unwritable place.

@pytest.fixture
def quantize_setup(tmp_path):
    from test_quantize_errors import _sample_folder, _tiny_model

    model = _tiny_model(tmp_path / "tiny.onnx")
    calib = _sample_folder(tmp_path / "calib", 4, seed=1)
    calib_list = tmp_path / "list.txt"
    calib_list.write_text("s0\ns1\ns2\ns3\n")
    return model, calib, calib_list


@pytest.mark.parametrize(("extra", "fragments"), [
    (["--trt-cache", "{model}", "-o", "{tmp}/q.onnx"], ["--trt-cache", "also given as the model"]),
    (["--trt-cache", "{list}", "-o", "{tmp}/q.onnx"], ["--trt-cache", "also given as --calib-list"]),
    (["--trt-cache", "{tmp}/q.onnx", "-o", "{tmp}/q.onnx"], ["-o and --trt-cache", "same path"]),
    (["--cache", "{tmp}/c.json", "--trt-cache", "{tmp}/c.json", "-o", "{tmp}/q.onnx"], ["--cache and --trt-cache"]),
    (["-o", "{tmp}/folder.onnx"], ["-o", "is a folder"]),
    (["-o", "{tmp}/plain/q.onnx"], ["'{tmp}/plain' is a file, not a folder"]),
    (["-o", "/proc/q.onnx"], ["-o '/proc/q.onnx'", "cannot write in '/proc'"]),
    (["--report", "{tmp}/plain", "-o", "{tmp}/q.onnx"], ["--report", "is a file; give a folder"]),
])
def test_quantize_refuses_a_destination_before_any_work(qx, quantize_setup, tmp_path, extra, fragments):
    model, calib, calib_list = quantize_setup
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "plain").write_text("a file\n")
    before = {path: path.read_bytes() for path in (model, calib_list)}
    names = {"model": model, "list": calib_list, "tmp": tmp_path}
    result = qx("quantize", model, "--calib", calib, "--calib-list", calib_list, *[a.format(**names) for a in extra])
    assert_user_error(result, *[f.format(**names) for f in fragments])
    assert {path: path.read_bytes() for path in before} == before  # the inputs are as they were
    assert not (tmp_path / "q.onnx").exists()


def test_a_cache_in_a_new_folder_is_written_there(qx, quantize_setup, tmp_path):
    model, calib, calib_list = quantize_setup
    result = qx("quantize", model, "--calib", calib, "--cache", tmp_path / "new" / "ranges.json",
                "--trt-cache", tmp_path / "other" / "trt.cache", "-o", tmp_path / "q.onnx")
    assert result.code == 0, result
    assert (tmp_path / "new" / "ranges.json").is_file() and (tmp_path / "other" / "trt.cache").is_file()
    assert not list((tmp_path / "new").glob(".*.tmp")) and not list((tmp_path / "other").glob(".*.tmp"))


def test_an_exclusion_that_names_nothing_is_refused(qx, quantize_setup, tmp_path):
    model, calib, _ = quantize_setup
    assert_user_error(qx("quantize", model, "--calib", calib, "--exclude", "Cnov", "-o", tmp_path / "q.onnx"),
                      "--exclude 'Cnov'", "no node of tiny.onnx")
    assert qx("quantize", model, "--calib", calib, "--exclude", "Relu", "-o", tmp_path / "q.onnx").code == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_a_target_sqnr_that_cannot_fail_is_refused(qx, quantize_setup, tmp_path, value):
    model, calib, _ = quantize_setup
    assert_user_error(qx("quantize", model, "--calib", calib, "--target-sqnr", value, "-o", tmp_path / "q.onnx"),
                      f"--target-sqnr {float(value)}")


def test_user_code_that_exits_is_a_user_error_not_a_silent_stop(qx, quantize_setup, tmp_path):
    model, calib, _ = quantize_setup
    (tmp_path / "leaves.py").write_text("import sys\nsys.exit(0)\nclass Net: pass\n")
    (tmp_path / "pre.py").write_text("def pre(x):\n    raise SystemExit('bye')\n")
    assert_user_error(qx("export", "--framework", "torch", "--model", f"{tmp_path / 'leaves.py'}:Net", "--weights",
                         tmp_path / "w.safetensors", "--input", "x:1x3x4x4", "-o", tmp_path / "e.onnx"),
                      "leaves.py", "sys.exit(0)")
    assert_user_error(qx("quantize", model, "--calib", calib, "--preprocess", f"{tmp_path / 'pre.py'}:pre",
                         "-o", tmp_path / "q.onnx"), "--preprocess", "sys.exit('bye')")
    assert not (tmp_path / "e.onnx").exists() and not (tmp_path / "q.onnx").exists()


def test_export_refuses_the_other_frameworks_options_and_bad_destinations(qx, tmp_path):
    (tmp_path / "m.py").write_text("import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
                                   "        return x\n")
    (tmp_path / "folder.onnx").mkdir()
    torch_export = ["export", "--framework", "torch", "--model", f"{tmp_path / 'm.py'}:Net", "--weights",
                    tmp_path / "w.safetensors", "--input", "x:1x3"]
    assert_user_error(qx(*torch_export, "--signature", "serving_default", "-o", tmp_path / "e.onnx"),
                      "--signature is for --framework tf")
    assert_user_error(qx("export", "--framework", "tf", "--model", tmp_path / "m.keras", "--weights",
                         tmp_path / "w.safetensors", "-o", tmp_path / "e.onnx"), "--weights is for --framework torch")
    assert_user_error(qx(*torch_export, "-o", tmp_path / "folder.onnx"), "-o", "is a folder")


def test_verify_refuses_bad_destinations_and_inputs_it_would_ignore(qx, tmp_path):
    dataset = tmp_path / "data"
    dataset.mkdir()
    (tmp_path / "ref.onnx").write_bytes(b"")
    (tmp_path / "cand.onnx").write_bytes(b"")
    verify = ["verify-equivalence", "--reference", tmp_path / "ref.onnx", "--candidate", tmp_path / "cand.onnx",
              "--dataset", dataset]
    assert_user_error(qx(*verify, "--out", dataset), "--out", "also given as --dataset")
    assert_user_error(qx(*verify, "--out", tmp_path / "ref.onnx"), "--out", "is a file; give a folder")
    assert_user_error(qx(*verify, "--out", tmp_path / "v", "--audit-config", tmp_path / "audit.config"),
                      "--audit-config", "no such file")
    assert_user_error(qx(*verify, "--out", tmp_path / "v", "--reference-weights", tmp_path / "w.safetensors"),
                      "--reference-weights is for a framework reference")
    assert list(dataset.iterdir()) == [] and not (tmp_path / "v").exists()
    (tmp_path / "m.py").write_text("class Net: pass\n")
    assert_user_error(qx("verify-equivalence", "--reference", f"{tmp_path / 'm.py'}:Net", "--candidate",
                         tmp_path / "cand.onnx", "--dataset", dataset, "--out", tmp_path / "v", "--input", "x:1x3"),
                      "--reference", "needs --reference-weights")


def test_an_accuracy_comparison_against_a_reference_that_scored_zero_checked_nothing():
    from types import SimpleNamespace

    from mlperf_qx.verify.report import accuracy_status
    from mlperf_qx.verify.results import ExtensionalResult, VerifyResult

    def role(value):
        return SimpleNamespace(score=SimpleNamespace(value=value, line=f"accuracy={100 * value:.3f}%"))

    def result(reference, candidate):
        ext = ExtensionalResult(task="classification", metric="accuracy", response=None, target=99.0,
                                threshold=0.99 * reference, reference=role(reference), candidate=role(candidate),
                                run_problems=[])
        return ext, VerifyResult("r", "c", "d", None, 5, "extensional", {}, extensional=ext)

    ext, verified = result(0.0, 0.0)
    assert ext.accuracy_passed and ext.not_checked and verified.verdict == "INCONCLUSIVE"
    assert accuracy_status(ext).startswith("NOT CHECKED: the reference scored 0")
    assert result(0.9, 0.9)[1].verdict == "PASSED" and result(0.9, 0.1)[1].verdict == "FAILED"


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--percentile", "99.9"], "--percentile is for --method percentile"),
    (["--holdout", "2"], "--holdout sets the samples"),
    (["--labels", "labels.txt"], "--labels are read for --target-accuracy only"),
    (["--method", "kl"], "--method kl: choose"),
    (["--format", "qdq2"], "--format qdq2: choose"),
])
def test_quantize_refuses_options_this_run_would_ignore_and_names_the_bad_one(qx, quantize_setup, tmp_path, extra,
                                                                              fragment):
    model, calib, _ = quantize_setup
    assert_user_error(qx("quantize", model, "--calib", calib, *extra, "-o", tmp_path / "q.onnx"), fragment)


def test_a_folder_given_as_a_file_and_a_text_file_given_as_an_array_say_what_they_are(qx, quantize_setup, tmp_path):
    model, _, _ = quantize_setup
    (tmp_path / "folder.onnx").mkdir()
    assert_user_error(qx("inspect", tmp_path / "folder.onnx"), "is a folder, not a file")
    text = tmp_path / "text"
    text.mkdir()
    (text / "s0.npy").write_text("hello\n")
    result = qx("quantize", model, "--calib", text, "-o", tmp_path / "q.onnx")
    assert_user_error(result, "s0.npy", "no .npy array header")
    assert "allow_pickle" not in result.err


def test_an_output_that_would_replace_a_file_inside_an_input_folder_is_refused(qx, quantize_setup, tmp_path):
    model, calib, _ = quantize_setup
    sample = calib / "s0.npy"
    before = sample.read_bytes()
    assert_user_error(qx("quantize", model, "--calib", calib, "--trt-cache", sample, "-o", tmp_path / "q.onnx"),
                      "--trt-cache", "is a file of --calib")
    assert sample.read_bytes() == before


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--mode", "intensional", "--duration-ms", "100"], "--duration-ms sets the LoadGen runs"),
    (["--run-length", "official", "--duration-ms", "100"], "--duration-ms is for --run-length quick"),
    (["--labels", "{tmp}/labels.txt", "--sample-list", "{tmp}/labels.txt"], "give one of the two"),
    (["--forbid-overlap"], "--forbid-overlap compares the accuracy set with --calib-list"),
    (["--calib-list", "{tmp}/nonexist.txt"], "--calib-list: file"),
    (["--user-conf", "{tmp}"], "is a folder, not a file"),
])
def test_verify_refuses_options_it_would_ignore_and_missing_files_before_any_run(qx, tmp_path, extra, fragment):
    dataset = tmp_path / "data"
    dataset.mkdir()
    for name in ("ref.onnx", "cand.onnx", "labels.txt"):
        (tmp_path / name).write_bytes(b"")
    result = qx("verify-equivalence", "--reference", tmp_path / "ref.onnx", "--candidate", tmp_path / "cand.onnx",
                "--dataset", dataset, "--out", tmp_path / "v", *[a.format(tmp=tmp_path) for a in extra])
    assert_user_error(result, fragment)
    assert not (tmp_path / "v").exists()
