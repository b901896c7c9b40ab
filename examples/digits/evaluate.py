"""Top-1 accuracy of ONNX models on the digits validation split (quick check, not LoadGen).

Usage: python examples/digits/evaluate.py --data build/digits/data MODEL.onnx [MODEL.onnx ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlperf_qx.runtime import open_session


def accuracy(model: Path, data: Path) -> float:
    entries = [line.split() for line in (data / "validation_map.txt").read_text().splitlines() if line.strip()]
    labels = np.array([int(label) for _, label in entries])
    session = open_session(model)
    name = session.get_inputs()[0].name
    nhwc = session.get_inputs()[0].shape[-1] == 1  # the Keras reference takes NHWC
    correct = 0
    for (sample, _), label in zip(entries, labels):
        image = np.load(data / "validation" / f"{sample}.npy")
        if nhwc:
            image = image.transpose(0, 2, 3, 1)
        correct += int(session.run(None, {name: image})[0].argmax() == label)
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("build/digits/data"))
    parser.add_argument("models", type=Path, nargs="+")
    args = parser.parse_args()
    for model in args.models:
        print(f"{model}: validation accuracy {accuracy(model, args.data):.2%}")


if __name__ == "__main__":
    main()
