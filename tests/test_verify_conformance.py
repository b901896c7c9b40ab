"""verify-equivalence against MLPerf's own rules: mlperf.conf through FromConfig, user.conf, audit
configs (never applied silently), the reference's response format and accuracy-script flags, the
compliance tests and the submission layout."""

import hashlib
import json
import subprocess
import sys

import numpy as np

from conftest import REPO, assert_user_error

SCRIPTS = REPO / "src" / "mlperf_qx" / "accuracy"
# mlperf.conf of the MLPerf inference repository (loadgen/mlperf.conf): '*.*.qsl_rng_seed' etc.
OFFICIAL_SEEDS = {"qsl_rng_seed": 2085463073848966840, "sample_index_rng_seed": 2747215439041700203,
                  "schedule_rng_seed": 16159082839903944936}
TEST01_AUDIT = "*.*.mode = 2\n*.*.accuracy_log_rng_seed = 720381539243781796\n*.*.accuracy_log_sampling_target = 4096\n"


def _run(qx, digits, out, *extra, samples=120):
    return qx("verify-equivalence", "--reference", digits["fp32"], "--candidate", digits["int8"],
              "--dataset", digits["data"] / "validation", "--labels", digits["data"] / "validation_map.txt",
              "--mode", "extensional", "--duration-ms", "300", "--samples", samples, "--out", out, *extra)


def _detail(folder):
    values = {}
    for line in (folder / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG "):
            record = json.loads(line[len(":::MLLOG "):])
            values[record["key"]] = record["value"]
    return values


def test_model_name_applies_mlperf_conf_and_a_quick_run_says_it_is_not_valid(qx, digits, tmp_path):
    out = tmp_path / "v"
    result = _run(qx, digits, out, "--model-name", "resnet")
    assert result.code == 0, result.out
    for role in ("reference", "candidate"):
        detail = _detail(out / role / "performance" / "run_1")
        for seed, value in OFFICIAL_SEEDS.items():
            assert detail[f"effective_{seed}"] == value, seed
        assert detail["effective_performance_sample_count"] == 1024  # resnet50.*.performance_sample_count_override
        assert detail["effective_test_mode"] == "PerformanceOnly"
        assert _detail(out / role / "accuracy")["effective_test_mode"] == "AccuracyOnly"
    run = json.loads((out / "report.json").read_text())["extensional"]["candidate"]["performance_run"]
    assert not run["valid_for_submission"]
    assert any("600000 ms" in p for p in run["submission_problems"]), run["submission_problems"]
    assert "not valid for submission" in result.out and "not valid for submission" in (out / "report.md").read_text()


def test_user_conf_is_applied_and_a_malformed_one_is_refused(qx, digits, tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("resnet50.Offline.target_qps = 4321\n")
    out = tmp_path / "v"
    assert _run(qx, digits, out, "--model-name", "resnet", "--user-conf", conf).code == 0
    assert _detail(out / "candidate" / "performance" / "run_1")["requested_offline_expected_qps"] == 4321
    conf.write_text("target_qps 5\n")
    assert_user_error(_run(qx, digits, tmp_path / "w", "--user-conf", conf), "user.conf:1", "model.scenario.key")


def test_audit_config_in_the_working_folder_is_never_applied_silently(qx, digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audit.config").write_text(TEST01_AUDIT)
    result = _run(qx, digits, tmp_path / "v")
    assert_user_error(result, "audit.config", "--compliance")
    assert "PASSED" not in result.out


def test_an_audit_config_that_changes_the_mode_fails_the_verdict(qx, digits, tmp_path):
    audit = tmp_path / "test01.config"
    audit.write_text(TEST01_AUDIT)
    out = tmp_path / "v"
    result = _run(qx, digits, out, "--audit-config", audit)
    assert result.code == 1, result.out
    problems = json.loads((out / "report.json").read_text())["extensional"]["run_problems"]
    assert any("asked for AccuracyOnly but LoadGen ran PerformanceOnly" in p for p in problems), problems
    # The accuracy run LoadGen turned into a performance run stayed a quick one (mlperf.conf's 600 s at
    # 1000 QPS, 660000 samples per model, made this test take a minute).
    turned = _detail(out / "reference" / "accuracy")
    assert turned["effective_test_mode"] == "PerformanceOnly" and turned["effective_min_duration_ms"] == 300


def test_int32_responses_with_a_label_offset_are_scored_as_the_script_is_told(qx, digits, tmp_path):
    """A 1001-class-style profile: argmax - 1 against a val_map whose labels are shifted the same way."""
    shifted = tmp_path / "val_map_shifted.txt"
    shifted.write_text("".join(f"{name} {int(label) - 1}\n" for name, label in
                               (line.split() for line in (digits["data"] / "validation_map.txt").read_text().splitlines())))
    plain, offset = tmp_path / "plain", tmp_path / "offset"
    assert _run(qx, digits, plain).code == 0
    result = qx("verify-equivalence", "--reference", digits["fp32"], "--candidate", digits["int8"], "--dataset",
                digits["data"] / "validation", "--labels", shifted, "--mode", "extensional", "--duration-ms", "300",
                "--samples", "120", "--response-dtype", "int32", "--label-offset", "-1", "--out", offset)
    assert result.code == 0, result.out
    report = json.loads((offset / "report.json").read_text())["extensional"]
    assert report["response"]["dtype"] == "int32" and report["response"]["label_offset"] == -1
    expected = json.loads((plain / "report.json").read_text())["extensional"]["candidate"]["score"]["line"]
    assert report["candidate"]["score"]["line"] == expected
    line = subprocess.run([sys.executable, str(SCRIPTS / "classification.py"), "--mlperf-accuracy-file",
                           str(offset / "candidate" / "accuracy" / "mlperf_log_accuracy.json"), "--imagenet-val-file",
                           str(shifted), "--dtype", "int32"], capture_output=True, text=True, check=True).stdout.strip()
    assert line == expected


def test_compliance_test01_and_the_submission_layout(qx, digits, tmp_path):
    out, submission = tmp_path / "v", tmp_path / "results" / "digits-cpu"
    result = _run(qx, digits, out, "--model-name", "resnet", "--compliance", "TEST01", "--submission-dir",
                  submission, samples=500)
    assert "TEST01" in result.out
    scenario = submission / "resnet" / "Offline"
    accuracy_txt = (scenario / "accuracy" / "accuracy.txt").read_text().splitlines()
    full_log = out / "candidate" / "accuracy" / "mlperf_log_accuracy.json"
    assert accuracy_txt[0].startswith("accuracy=") and accuracy_txt[1] == \
        f"hash={hashlib.sha256(full_log.read_bytes()).hexdigest()}"
    packed = (scenario / "accuracy" / "mlperf_log_accuracy.json").stat().st_size
    assert full_log.stat().st_size > 10 * 1024 and packed <= 2 * 4096 + 16  # truncated as MLPerf packages it
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        assert (scenario / "performance" / "run_1" / name).exists()
        assert (scenario / "TEST01" / "performance" / "run_1" / name).exists()
    assert (scenario / "TEST01" / "accuracy" / "mlperf_log_accuracy.json").exists()
    measurements = json.loads((scenario / "measurements.json").read_text())
    assert measurements["weight_data_types"].startswith("int8") and measurements["input_data_types"] == "fp32"
    assert measurements["retraining"] == "No" and "quantization" in measurements["weight_transformations"]
    assert (scenario / "user.conf").read_text().startswith("resnet50.Offline.target_qps = ")
    # Every response the performance run sampled is the accuracy run's answer for that sample.
    verify_accuracy = (scenario / "TEST01" / "verify_accuracy.txt").read_text()
    assert "TEST PASS" in verify_accuracy and "num_perf_log_data_mismatch = 0" in verify_accuracy
    verify_performance = (scenario / "TEST01" / "verify_performance.txt").read_text().splitlines()[-1]
    compliance = json.loads((out / "report.json").read_text())["extensional"]["compliance"]
    assert compliance["lines"]["verify_performance.txt"] == verify_performance
    assert result.code == (0 if compliance["passed"] else 1)


def test_compliance_test04_issues_one_sample_repeatedly(qx, digits, tmp_path):
    out = tmp_path / "v"
    result = _run(qx, digits, out, "--compliance", "TEST04")
    detail = _detail(out / "candidate" / "TEST04" / "run")
    assert detail["effective_performance_issue_same"] is True and detail["effective_performance_issue_same_index"] == 3
    line = (out / "candidate" / "TEST04" / "verify_performance.txt").read_text().splitlines()[-1]
    assert line.startswith("TEST PASS") or line.startswith("TEST FAIL")
    assert result.code == (0 if line == "TEST PASS" else 1)


def test_mlperf_flag_names_and_defaults_of_the_classification_script(tmp_path):
    log = tmp_path / "log.json"
    log.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": np.float32(3).tobytes().hex()},
                               {"seq_id": 1, "qsl_idx": 1, "data": np.float32(5).tobytes().hex()},
                               {"seq_id": 2, "qsl_idx": 1, "data": np.float32(5).tobytes().hex()}]))
    val_map = tmp_path / "val_map.txt"
    val_map.write_text("a.JPEG 3\nb.JPEG 4\n")
    done = subprocess.run([sys.executable, str(SCRIPTS / "classification.py"), "--mlperf-accuracy-file", str(log),
                           "--imagenet-val-file", str(val_map)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "accuracy=50.000%, good=1, total=2"
