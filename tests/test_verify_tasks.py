"""Tasks beyond top-1 under real LoadGen: a transformer encoder's raw outputs scored by agreement
with the reference, and start/end logits scored as answer spans, with the reference's response
layouts (float32, BERT's (seq, 2))."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from conftest import REPO, assert_user_error

ZOO_DIR = REPO / "tests" / "zoo"
sys.path.insert(0, str(ZOO_DIR))

from samples import write_samples  # noqa: E402

SCRIPTS = REPO / "src" / "mlperf_qx" / "accuracy"

INPUTS = ["--input", "input_ids:1x16:int64", "--input", "attention_mask:1x16:int64"]

pytestmark = pytest.mark.slow


def _export_and_quantize(qx, folder, factory):
    import torch
    from safetensors.torch import save_file

    import architectures

    weights = folder / "weights.safetensors"
    module = getattr(architectures, factory)()
    save_file({k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}, str(weights))
    del torch
    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    assert qx("export", "--framework", "torch", "--model", f"{REPO / 'tests' / 'zoo' / 'architectures.py'}:{factory}",
              "--weights", weights, *INPUTS, "--dynamic-batch", "-o", fp32).code == 0
    data = write_samples(fp32, folder / "data", count=40, vocab=200, seed=1)
    calib = folder / "calib.txt"
    calib.write_text("".join(f"sample_{i:03d}\n" for i in range(24)))
    held_out = folder / "held_out.txt"
    held_out.write_text("".join(f"sample_{i:03d}\n" for i in range(24, 40)))
    assert qx("quantize", fp32, "--calib", data, "--calib-list", calib, "--method", "minmax", "-o", int8).code == 0
    return fp32, int8, data, calib, held_out


def _entries(log):
    first = {}
    for entry in json.loads(log.read_text()):
        first.setdefault(entry["qsl_idx"], entry["data"])
    return first


def test_encoder_raw_outputs_get_an_agreement_verdict(qx, tmp_path):
    fp32, int8, data, calib, held_out = _export_and_quantize(qx, tmp_path, "hf_bert_encoder")
    out = tmp_path / "v"
    result = qx("verify-equivalence", "--reference", fp32, "--candidate", int8, "--dataset", data,
                "--sample-list", held_out, "--task", "raw", "--calib-list", calib, "--duration-ms", "300", "--out", out)
    assert result.code == 0, result.out
    report = json.loads((out / "report.json").read_text())
    ext = report["extensional"]
    assert ext["task"] == "raw" and report["labels"] is None and report["samples"] == 16
    assert ext["reference"]["score"]["value"] == pytest.approx(100.0)
    assert ext["candidate"]["score"]["figures"]["mean_cosine"] >= 0.99
    # Each response is the sample's (16, 32) token embeddings as float32, as the reference logs them.
    session = ort.InferenceSession(str(fp32))
    sample = np.load(data / "sample_024.npz")
    expected = session.run(None, {k: sample[k] for k in ("input_ids", "attention_mask")})[0]
    logged = _entries(out / "reference" / "accuracy" / "mlperf_log_accuracy.json")[0]
    np.testing.assert_allclose(np.frombuffer(bytes.fromhex(logged), np.float32), expected.ravel(), rtol=1e-5, atol=1e-5)
    # The standalone script, run as the report records it (with each output's per-sample layout),
    # prints the same figures, the per-channel judgement included.
    command = ext["candidate"]["score"]["command"]
    assert command[command.index("--layout") + 1].endswith(":16x32")
    line = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    assert line == ext["candidate"]["score"]["line"] and "min_channel_cosine=" in line
    assert_user_error(qx("verify-equivalence", "--reference", fp32, "--candidate", int8, "--dataset", data,
                         "--labels", held_out, "--task", "raw", "--out", tmp_path / "w"), "--sample-list")


def test_start_end_logits_are_scored_as_spans(qx, tmp_path):
    fp32, int8, data, calib, held_out = _export_and_quantize(qx, tmp_path, "hf_bert_qa")
    out = tmp_path / "v"
    result = qx("verify-equivalence", "--reference", fp32, "--candidate", int8, "--dataset", data,
                "--sample-list", held_out, "--task", "spans", "--mode", "extensional", "--duration-ms", "300",
                "--out", out)
    ext = json.loads((out / "report.json").read_text())["extensional"]
    assert ext["response"]["layout"] == "(seq, 2) start/end logits" and len(ext["response"]["outputs"]) == 2
    assert ext["reference"]["score"]["value"] == pytest.approx(100.0)  # the reference's spans are the truth
    assert result.code == (0 if ext["candidate"]["score"]["value"] >= ext["threshold"] else 1)
    # BERT's layout: np.stack([start, end], axis=-1) per sample, float32.
    session = ort.InferenceSession(str(fp32))
    sample = np.load(data / "sample_024.npz")
    start, end = session.run(None, {k: sample[k] for k in ("input_ids", "attention_mask")})
    logged = _entries(out / "reference" / "accuracy" / "mlperf_log_accuracy.json")[0]
    np.testing.assert_allclose(np.frombuffer(bytes.fromhex(logged), np.float32).reshape(-1, 2),
                               np.stack([start[0], end[0]], axis=-1), rtol=1e-5, atol=1e-5)
    # With a spans file of labels, both roles are scored against it.
    spans = tmp_path / "spans.txt"
    spans.write_text("".join(f"sample_{i:03d} 3 5\n" for i in range(24, 40)))
    labelled = tmp_path / "w"
    qx("verify-equivalence", "--reference", fp32, "--candidate", int8, "--dataset", data, "--labels", spans,
       "--task", "spans", "--mode", "extensional", "--duration-ms", "300", "--out", labelled)
    line = json.loads((labelled / "report.json").read_text())["extensional"]["candidate"]["score"]["line"]
    assert line.startswith('{"exact_match": ')


def test_precision_search_keeps_attention_mask_readers_fp32(qx, tmp_path):
    """The search re-plans with its FP32 ops; the ops reading the additive attention mask must stay
    FP32 through that re-plan (they once lost their exclusion there)."""
    fp32, _, data, calib, _ = _export_and_quantize(qx, tmp_path, "hf_bert_encoder")
    searched = tmp_path / "searched.onnx"
    result = qx("quantize", fp32, "--calib", data, "--calib-list", calib, "--target-cosine", "0.99999",
                "--holdout", "8", "-o", searched, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["precision_search"]["fp32_ops"], "the target should keep some op FP32"
    reasons = [n["reason"] for n in summary["nodes"] if not n["quantized"]]
    assert any("masking values" in r for r in reasons), reasons
