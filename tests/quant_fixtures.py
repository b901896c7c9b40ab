"""Trained reference models and calibration data shared by the quantization tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from conftest import REPO, ZOO

sys.path.insert(0, str(REPO / "examples" / "digits"))
import dataset  # noqa: E402


def write_digits_data(out: Path) -> Path:
    for split in ("validation", "calibration_candidates"):
        dataset.write_split(out, split)
    return out


def train_digits_cnn(out: Path, epochs: int) -> Path:
    subprocess.run([sys.executable, str(REPO / "examples/digits/train_torch.py"), "--out", str(out),
                    "--epochs", str(epochs)], check=True, capture_output=True)
    return out / "digits_torch.safetensors"


def export_trained_digits(folder: Path, name: str = "fp32.onnx") -> tuple[Path, Path]:
    """The digits splits and the DigitsNet reference trained 40 epochs and exported (dynamic batch)
    to ``folder / name``: (model, data folder)."""
    from mlperf_qx.cli.main import main

    data = write_digits_data(folder / "data")
    weights = train_digits_cnn(folder, epochs=40)
    model = folder / name
    assert main(["export", "--framework", "torch", "--model", f"{REPO}/examples/digits/model_torch.py:DigitsNet",
                 "--weights", str(weights), "--input", "image:1x1x8x8", "--dynamic-batch", "-o", str(model)]) == 0
    return model, data


def train_digits_encoder(out: Path, epochs: int = 60) -> Path:
    from safetensors.torch import save_file

    sys.path.insert(0, str(ZOO.parent))
    from zoo import DigitsEncoder

    torch.manual_seed(0)
    images, labels = dataset.load()
    train = dataset.split_indices()["train"]
    x, y = torch.from_numpy(images[train]), torch.from_numpy(labels[train])
    model = DigitsEncoder()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for start in range(0, len(x), 128):
            loss = torch.nn.functional.cross_entropy(model(x[start:start + 128]), y[start:start + 128])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path = out / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def validation_accuracy(model_path: Path, data: Path) -> float:
    from mlperf_qx.runtime import open_session

    lines = [line.split() for line in (data / "validation_map.txt").read_text().splitlines() if line]
    images = np.concatenate([np.load(data / "validation" / f"{name}.npy") for name, _ in lines])
    labels = np.array([int(label) for _, label in lines])
    session = open_session(model_path)
    name = session.get_inputs()[0].name
    predicted = np.concatenate([session.run(None, {name: images[i:i + 1]})[0] for i in range(len(images))]).argmax(1)
    return float((predicted == labels).mean())
