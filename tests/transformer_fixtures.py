"""The synthetic-outlier encoder (tests/models/zoo.py) exported with qx export, and token samples
with a calibration list, shared by the equalization and precision-search tests."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import ZOO

SEQ, SAMPLES, VOCAB = 16, 48, 64


@dataclass
class OutlierModel:
    fp32: Path
    calib: Path
    calib_list: Path
    held_out: list[dict]  # token windows outside the calibration list


def export_outlier_encoder(folder: Path) -> OutlierModel:
    import torch
    from safetensors.torch import save_file

    from mlperf_qx.cli.main import main

    sys.path.insert(0, str(ZOO.parent))
    from zoo import OutlierEncoder, outlier_state_dict

    torch.manual_seed(0)
    weights = folder / "outlier_encoder.safetensors"
    save_file({k: v.contiguous() for k, v in outlier_state_dict(OutlierEncoder()).items()}, str(weights))
    model = folder / "outlier_encoder.onnx"
    assert main(["export", "--framework", "torch", "--model", f"{ZOO}:OutlierEncoder", "--weights", str(weights),
                 "--input", f"tokens:1x{SEQ}:int64", "--dynamic-batch", "--tolerance", "1e-3,1e-3",
                 "-o", str(model)]) == 0
    rng = np.random.default_rng(0)
    calib = folder / "tokens"
    calib.mkdir()
    names = []
    for index in range(SAMPLES):
        names.append(f"window_{index:03d}")
        np.save(calib / f"{names[-1]}.npy", rng.integers(0, VOCAB, (1, SEQ), dtype=np.int64))
    calib_list = folder / "tokens_list.txt"
    calib_list.write_text("".join(f"{n}\n" for n in names))
    held_out = [{"tokens": rng.integers(0, VOCAB, (1, SEQ), dtype=np.int64)} for _ in range(16)]
    return OutlierModel(model, calib, calib_list, held_out)


def mean_cosine(reference: Path, candidate: Path, feeds: list[dict]) -> tuple[float, float]:
    """(mean, min) per-sample cosine of the two models' first output."""
    from mlperf_qx.runtime import open_session

    a, b = open_session(reference), open_session(candidate)
    cosines = []
    for feed in feeds:
        x, y = a.run(None, feed)[0].ravel().astype(np.float64), b.run(None, feed)[0].ravel().astype(np.float64)
        cosines.append(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))))
    return float(np.mean(cosines)), float(np.min(cosines))
