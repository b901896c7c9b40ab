"""Retraining script of the TensorFlow/Keras digits reference (fixed seeds, same split as torch).

Images are NHWC (N, 8, 8, 1). Saves ``digits_tf.keras`` and ``train_tf.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset import load, split_indices  # noqa: E402
from model_tf import digits_net  # noqa: E402

SEED = 0
EPOCHS = 40
BATCH = 64


def train(epochs: int = EPOCHS) -> tuple[keras.Model, float]:
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    images, labels = load()
    images = images.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    split = split_indices()
    model = digits_net()
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=epochs * int(np.ceil(len(split["train"]) / BATCH)))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(images[split["train"]], labels[split["train"]], batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0)
    predicted = model.predict(images[split["validation"]], verbose=0).argmax(1)
    return model, float((predicted == labels[split["validation"]]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/digits"))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    model, val_accuracy = train(args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "digits_tf.keras"
    model.save(path)
    report = {"model": "digits_net", "framework": "tf", "seed": SEED, "epochs": args.epochs,
              "validation_accuracy": val_accuracy, "weights": path.name}
    (args.out / "train_tf.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"tf reference: validation accuracy {val_accuracy:.2%} -> {path}")


if __name__ == "__main__":
    main()
