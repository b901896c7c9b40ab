"""Retraining script of the PyTorch digits reference (fixed seeds; seconds on a CPU).

Trains DigitsNet on the training split only, reports validation accuracy, and saves the
state_dict as safetensors plus a JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import load, split_indices  # noqa: E402
from model_torch import DigitsNet  # noqa: E402

SEED = 0
EPOCHS = 40
BATCH = 64


def train(epochs: int = EPOCHS) -> tuple[DigitsNet, float]:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    images, labels = load()
    split = split_indices()
    x_train, y_train = torch.from_numpy(images[split["train"]]), torch.from_numpy(labels[split["train"]])
    model = DigitsNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    model.eval()
    return model, accuracy(model, images[split["validation"]], labels[split["validation"]])


def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        predicted = model(torch.from_numpy(images)).argmax(1).numpy()
    return float((predicted == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/digits"))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    model, val_accuracy = train(args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "digits_torch.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    report = {"model": "DigitsNet", "framework": "torch", "seed": SEED, "epochs": args.epochs,
              "validation_accuracy": val_accuracy, "weights": weights.name}
    (args.out / "train_torch.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"torch reference: validation accuracy {val_accuracy:.2%} -> {weights}")


if __name__ == "__main__":
    main()
