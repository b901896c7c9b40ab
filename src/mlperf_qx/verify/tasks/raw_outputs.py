"""Raw outputs: the response is the selected output tensors, flattened and concatenated as float32
(as the BERT reference logs its logits). No labels: the candidate is scored by its agreement with
the reference's log (``agreement.py``): the score is 100 × the mean cosine similarity, so the
verdict asks a mean cosine of 0.99 (or 0.999) of the reference's outputs; top-1 agreement and the
largest absolute error are reported beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..accuracy import agreement as script
from .base import Score, Task, per_sample


class RawOutputs(Task):
    name = "raw"
    metric = "mean cosine vs reference × 100"
    labels_form = None  # agreement with the reference's log needs no labels
    needs_labels = False

    def encode(self, outputs: dict[str, np.ndarray], count: int) -> list[bytes]:
        flat = np.concatenate([per_sample(outputs[n], count, n).astype(self.response.dtype)
                               for n in self.response.outputs], axis=1)
        return [row.tobytes() for row in flat]

    def score(self, log: Path, reference_log: Path, labels: Path | None) -> Score:
        dtype = np.dtype(self.response.dtype)
        result = script.compare(script.read_outputs(str(reference_log), dtype), script.read_outputs(str(log), dtype))
        command = self.script_command("agreement.py", "--reference-accuracy-file", reference_log,
                                      "--candidate-accuracy-file", log, "--dtype", self.response.dtype)
        return Score(100.0 * result["mean_cosine"], script.agreement_line(result), command,
                     {k: float(v) for k, v in result.items()})
