"""A detection head whose output concatenates boxes (up to ~320) and sigmoid scores (0..1): the
honest quantize keeps the scores alive (the Concat stays FP32, with the reason in --explain), and
what it writes passes the intensional verdict."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ZOO_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(ZOO_DIR))

from detection_head import CLASSES, INPUTS  # noqa: E402
from samples import write_samples  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    import torch
    from safetensors.torch import save_file

    from detection_head import detection_head
    from mlperf_qx.cli.main import main

    folder = tmp_path_factory.mktemp("detection_head")
    weights = folder / "weights.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in detection_head().state_dict().items()}, str(weights))
    del torch
    fp32 = folder / "fp32.onnx"
    specs = [a for spec in INPUTS for a in ("--input", spec)]
    assert main(["export", "--framework", "torch", "--model", f"{ZOO_DIR / 'detection_head.py'}:detection_head",
                 "--weights", str(weights), *specs, "-o", str(fp32)]) == 0
    calib = write_samples(fp32, folder / "calib", count=12)
    validation = write_samples(fp32, folder / "validation", count=6, seed=1, prefix="val")
    return {"fp32": fp32, "calib": calib, "validation": validation}


def _outputs(path: Path, folder: Path) -> np.ndarray:
    from mlperf_qx.runtime import open_session

    session = open_session(path)
    return np.concatenate([session.run(None, dict(np.load(folder / f"{i}.npz")))[0]
                           for i in (folder / "list.txt").read_text().split()])


def test_scores_survive_and_the_concat_says_why(head, qx, tmp_path):
    out = tmp_path / "int8.onnx"
    result = qx("quantize", head["fp32"], "--calib", head["calib"], "--calib-list", head["calib"] / "list.txt",
                "-o", out, "--json")
    assert result.code == 0, result.err
    nodes = {n["name"]: n for n in json.loads(result.out)["nodes"]}
    concat = [n for n in nodes.values() if n["op_type"] == "Concat"]
    assert len(concat) == 1 and not concat[0]["quantized"], concat
    assert "ranges differ" in concat[0]["reason"] and "levels" in concat[0]["reason"], concat[0]["reason"]
    reference, candidate = _outputs(head["fp32"], head["validation"]), _outputs(out, head["validation"])
    boxes, scores = reference[:, :4], reference[:, 4:4 + CLASSES]
    assert boxes.max() > 200 and 0 < scores.max() < 1  # the head this test is about
    noise = np.sum((scores - candidate[:, 4:]) ** 2)
    assert 10 * np.log10(np.sum(scores ** 2) / noise) > 25  # the scores are alive
    # The grid the Concat would have shared: every score rounds to zero on it (the test can fail).
    step = np.float32(np.abs(reference).max() / 127)
    assert np.all(np.rint(scores / step) == 0)


def test_honest_candidate_passes_the_intensional_verdict(head, qx, tmp_path):
    out = tmp_path / "int8.onnx"
    assert qx("quantize", head["fp32"], "--calib", head["calib"], "--calib-list", head["calib"] / "list.txt",
              "--method", "entropy", "-o", out).code == 0
    result = qx("verify-equivalence", "--reference", head["fp32"], "--candidate", out, "--dataset",
                head["validation"], "--sample-list", head["validation"] / "list.txt", "--task", "raw",
                "--calib-list", head["calib"] / "list.txt", "--mode", "intensional", "--out", tmp_path / "verify")
    checks = json.loads((tmp_path / "verify" / "report.json").read_text())["intensional"]["checks"]
    assert all(c["passed"] for c in checks), [c for c in checks if not c["passed"]]
    assert result.code == 0, result
