"""Top-1 classification, as MLPerf's image-classification reference answers: the argmax of one
output plus a label offset (−1 for the 1001-class TF/ONNX ResNet-50 profiles), one value in the
response dtype (float32 by default, as the reference logs it), scored by ``classification.py`` with
``accuracy-imagenet.py``'s flags against a val_map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...accuracy import classification as script
from ..labels import VAL_MAP_FORM
from .base import Score, Task, per_sample, response_rows


class Classification(Task):
    name = "classification"
    metric = "top-1 accuracy (%)"
    checker_metric = "acc"
    labels_form = VAL_MAP_FORM
    needs_labels = True

    def encode(self, outputs: dict[str, np.ndarray], count: int) -> np.ndarray:
        name = self.response.outputs[0]
        top1 = np.argmax(per_sample(outputs[name], count, name), axis=1) + self.response.label_offset
        return response_rows(top1, self.response.dtype)

    def score(self, log: Path, reference_log: Path, labels: Path | None) -> Score:
        assert labels is not None
        predictions = script.read_predictions(str(log), np.dtype(self.response.dtype))
        truth = script.read_labels(str(labels))
        good, total = script.score(predictions, truth)
        command = self.script_command("classification.py", "--mlperf-accuracy-file", log, "--imagenet-val-file", labels,
                                      *(("--dtype", self.response.dtype) if self.response.dtype != "float32" else ()))
        return Score(100.0 * good / total if total else 0.0, script.accuracy_line(good, total), command,
                     {"good": good, "total": total})
