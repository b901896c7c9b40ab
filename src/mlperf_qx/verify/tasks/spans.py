"""Start/end spans (extractive question answering, MLPerf's BERT): the response is the start and
end logits laid out (seq, 2) in float32, as the BERT reference's SUT answers. ``spans.py`` picks
each sample's best span as accuracy-squad.py does and scores F1 (and exact match) against a spans
file of labels when one is given, else against the reference's own spans."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import UserInputError
from ...accuracy import spans as script
from ..labels import SPANS_FORM
from .base import Score, Task, per_sample, response_rows


class Spans(Task):
    name = "spans"
    metric = "span F1 (%)"
    checker_metric = "F1"
    labels_form = SPANS_FORM
    needs_labels = False

    def encode(self, outputs: dict[str, np.ndarray], count: int) -> np.ndarray:
        names = self.response.outputs
        if len(names) == 2:
            start, end = (per_sample(outputs[n], count, n) for n in names)
            logits = np.stack([start, end], axis=-1)
        else:
            logits = per_sample(outputs[names[0]], count, names[0]).reshape(count, -1, 2)
            if logits.shape[1] == 0:
                raise UserInputError(f"output '{names[0]}' holds no (seq, 2) start/end logits")
        return response_rows(logits.reshape(count, -1), self.response.dtype)

    def score(self, log: Path, reference_log: Path, labels: Path | None) -> Score:
        dtype = np.dtype(self.response.dtype)
        predicted = script.read_spans_log(str(log), dtype)
        truth = script.read_spans_file(str(labels)) if labels is not None else script.read_spans_log(str(reference_log), dtype)
        result = script.score(predicted, truth)
        truth_flag = ("--spans-file", labels) if labels is not None else ("--reference-accuracy-file", reference_log)
        command = self.script_command("spans.py", "--mlperf-accuracy-file", log, *truth_flag)
        return Score(result["f1"], script.accuracy_line(result), command, {k: float(v) for k, v in result.items()})
