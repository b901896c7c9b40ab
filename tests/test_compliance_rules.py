"""MLPerf's compliance arithmetic and audit configs, and a submission tree that runs add to. The
figures are the ones MLPerf's scripts use (inference repository at b66003e, cited per test)."""

import pytest

from mlperf_qx.calibration.sample_ids import ids_sha256, read_id_list
from mlperf_qx.verify.compliance import audit_config_text, performance_verdict
from mlperf_qx.verify.loadgen_settings import LoadGenConfig
from mlperf_qx.verify.submission import merge_parts

PASS, FAIL = "TEST PASS", "TEST FAIL: Test score invalid"


def test_test04_allows_a_run_up_to_20_percent_faster_below_200000_qps():
    """TEST04/verify_performance.py:137-148: SingleStream's score is 1e9 / early-stopping latency;
    the threshold is 20 % whenever that score is <= 200000 (a latency >= 5 us), else 10 %."""
    reference = 1e9 / 2_000_000  # 2 ms: 500 "QPS"
    assert performance_verdict("TEST04", "SingleStream", reference, reference * 1.15) == PASS
    assert performance_verdict("TEST04", "SingleStream", reference, reference * 1.21) == FAIL
    assert performance_verdict("TEST04", "SingleStream", 1e9 / 4000, 1e9 / 4000 * 1.15) == FAIL  # 4 us
    assert performance_verdict("TEST04", "Offline", 1000.0, 1099.0) == PASS
    assert performance_verdict("TEST04", "Offline", 1000.0, 1100.0) == FAIL  # strictly below 1 + threshold
    assert performance_verdict("TEST04", "MultiStream", 1e9 / 8e6, 1e9 / 8e6 * 1.19) == PASS


def test_test01_bands_the_latency_itself():
    """TEST01/verify_performance.py:33-38 and 96-104: the early-stopping latency (ns) of SingleStream
    must lie within +-10 % of the performance run's (20 % at <= 200 us; MultiStream <= 1.6 ms)."""
    latency = 2_000_000.0
    assert performance_verdict("TEST01", "SingleStream", latency, latency * 0.905) == PASS
    assert performance_verdict("TEST01", "SingleStream", latency, latency * 1.105) == FAIL
    assert performance_verdict("TEST01", "SingleStream", 150_000.0, 150_000.0 * 1.15) == PASS
    assert performance_verdict("TEST01", "MultiStream", 1_500_000.0, 1_500_000.0 * 0.85) == PASS
    assert performance_verdict("TEST01", "Offline", 1000.0, 890.0) == FAIL


@pytest.mark.parametrize("name, target", [("resnet", 4096), ("3d-unet-99", 64), ("yolo-99", 64),
                                          ("stable-diffusion-xl", 128), ("bert-99.9", 4096), (None, 4096)])
def test_test01_audit_config_is_the_benchmarks_own(name, target):
    """compliance/TEST01/<harness folder>/audit.config: accuracy_log_sampling_target per benchmark."""
    text = audit_config_text("TEST01", LoadGenConfig(model_name=name))
    assert text == ("*.*.mode = 2\n*.*.accuracy_log_rng_seed = 720381539243781796\n"
                    f"*.*.accuracy_log_sampling_target = {target}\n")


def test_test04_audit_config_covers_every_scenario():
    """compliance/TEST04/audit.config names MultiStream, Offline, SingleStream and Server."""
    text = audit_config_text("TEST04", LoadGenConfig())
    for scenario in ("MultiStream", "Offline", "SingleStream", "Server"):
        assert f"*.{scenario}.performance_issue_same_index = 3\n" in text


def test_a_run_adds_to_the_tree_and_replaces_only_what_it_reran(tmp_path):
    final, staging = tmp_path / "resnet" / "Offline", tmp_path / "resnet" / ".Offline.qx-staging"
    (final / "TEST01").mkdir(parents=True)
    (final / "TEST01" / "verify_accuracy.txt").write_text("TEST PASS\n")
    (final / "accuracy").mkdir()
    (final / "accuracy" / "old.txt").write_text("old")
    (final / "README.md").write_text("by hand")
    for part in ("TEST04", "accuracy"):
        (staging / part).mkdir(parents=True)
        (staging / part / "new.txt").write_text("new")
    (staging / "user.conf").write_text("resnet50.Offline.target_qps = 1\n")
    merge_parts(staging, final)
    assert sorted(p.name for p in final.iterdir()) == ["README.md", "TEST01", "TEST04", "accuracy", "user.conf"]
    assert (final / "TEST01" / "verify_accuracy.txt").read_text() == "TEST PASS\n"
    assert [p.name for p in (final / "accuracy").iterdir()] == ["new.txt"]
    assert not staging.exists()


def test_mlperf_lists_with_repeats_are_used_as_published(tmp_path, capsys):
    """calibration/CNNDailyMail/calibration-list.txt names two articles twice and
    language/gpt-j/prepare-calibration.py:39-49 uses every line: so does qx, with a warning, and the
    ids fingerprint tells the list with its repeats from the list without them."""
    listed = tmp_path / "calibration-list.txt"
    listed.write_text("b05f9fa9\n1a2b\nb05f9fa9\nc3d4\n")
    ids = read_id_list(listed, "--calib-list")
    assert ids == ["b05f9fa9", "1a2b", "b05f9fa9", "c3d4"]
    assert f"warning: {listed}:3: sample id 'b05f9fa9' repeats line 1" in capsys.readouterr().err
    assert ids_sha256(ids) != ids_sha256(list(dict.fromkeys(ids)))


# tools/submission/submission_checker/constants.py SYSTEM_DESC_REQUIRED_FIELDS (lines 1833-1869).
SYSTEM_DESC_REQUIRED_FIELDS = (
    "division submitter status system_name number_of_nodes host_processor_model_name host_processors_per_node "
    "host_processor_core_count host_memory_capacity host_storage_capacity host_storage_type accelerators_per_node "
    "accelerator_model_name accelerator_memory_capacity framework operating_system system_type other_software_stack "
    "host_processor_frequency host_processor_caches host_memory_configuration host_processor_interconnect "
    "host_networking host_networking_topology accelerator_frequency accelerator_host_interconnect "
    "accelerator_interconnect accelerator_interconnect_topology accelerator_memory_configuration "
    "accelerator_on-chip_memories cooling hw_notes sw_notes host_network_card_count system_type_detail").split()


def test_templates_carry_every_field_the_checker_requires_and_never_overwrite(tmp_path):
    import json

    from mlperf_qx.verify.templates import write_templates

    results = tmp_path / "closed" / "acme" / "results" / "cpu-box"
    written = write_templates(results, "resnet", "Offline", "onnxruntime 1.0", "qx verify-equivalence --x")
    system = tmp_path / "closed" / "acme" / "systems" / "cpu-box.json"
    assert sorted(written) == sorted([system, tmp_path / "closed/acme/src/resnet/README.md",
                                      results / "resnet" / "Offline" / "README.md"])
    fields = json.loads(system.read_text())
    assert set(SYSTEM_DESC_REQUIRED_FIELDS) <= set(fields)
    # system_check.py: meaningful fields must be truthy (0 is not), is_network must be a string if present,
    # and any non-empty string, "false" included, turns on the network-mode fields.
    assert all(isinstance(v, str) and v for v in fields.values())
    assert fields["accelerators_per_node"] == "0" and "is_network" not in fields
    assert (fields["division"], fields["submitter"]) == ("closed", "acme")
    assert fields["status"].startswith("TO BE COMPLETED")
    assert "qx verify-equivalence --x" in (results / "resnet" / "Offline" / "README.md").read_text()
    system.write_text("{}")
    assert write_templates(results, "resnet", "Server", "onnxruntime 1.0", "qx") == [
        results / "resnet" / "Server" / "README.md"]
    assert system.read_text() == "{}"
    assert write_templates(tmp_path / "elsewhere", "resnet", "Offline", "ort", "qx") == []
