"""The digits dataset and its fixed split (scikit-learn's bundled 8x8 images; no download).

Split, drawn once with a fixed seed over the 1,797 images:
  validation (500)              held out: the accuracy set, never used for calibration
  calibration candidates (300)  the only pool a calibration list may draw from
  training (997)                what the reference models are trained on

Samples are named ``digits_NNNN`` after their index in scikit-learn's array, so a sample keeps its
name whatever split or list it appears in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

SPLIT_SEED = 20261122
N_VALIDATION = 500
N_CALIBRATION_CANDIDATES = 300
IMAGE_SHAPE = (1, 8, 8)  # NCHW without the batch; the TensorFlow reference uses NHWC


def sample_name(index: int) -> str:
    return f"digits_{index:04d}"


def load() -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 in [0, 1], shape (N, 1, 8, 8), and int64 labels."""
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0).reshape(-1, *IMAGE_SHAPE)
    return images, digits.target.astype(np.int64)


def split_indices() -> dict[str, np.ndarray]:
    count = len(load_digits().target)
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    validation = np.sort(order[:N_VALIDATION])
    calibration = np.sort(order[N_VALIDATION:N_VALIDATION + N_CALIBRATION_CANDIDATES])
    training = np.sort(order[N_VALIDATION + N_CALIBRATION_CANDIDATES:])
    return {"train": training, "calibration_candidates": calibration, "validation": validation}


def write_split(out: Path, split: str) -> Path:
    """Write one split as a folder of ``digits_NNNN.npy`` (1x1x8x8 each) plus MLPerf's val_map.txt."""
    images, labels = load()
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in split_indices()[split]:
        np.save(folder / f"{sample_name(index)}.npy", images[index:index + 1])
        lines.append(f"{sample_name(index)} {labels[index]}")
    (out / f"{split}_map.txt").write_text("\n".join(lines) + "\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/digits/data"))
    args = parser.parse_args()
    for split in ("validation", "calibration_candidates"):
        folder = write_split(args.out, split)
        print(f"wrote {folder} and {args.out / (split + '_map.txt')}")


if __name__ == "__main__":
    main()
