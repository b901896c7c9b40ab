"""Raw outputs: the response is the selected output tensors, flattened and concatenated as float32
(as the BERT reference logs its logits). No labels: the candidate is scored by its agreement with
the reference's log (``agreement.py``): the score is 100 × the mean cosine similarity, so the
verdict asks a mean cosine of 0.99 (or 0.999) of the reference's outputs.

A pooled cosine is dominated by the largest values: a detection head that concatenates boxes
(~320) and sigmoid scores (0..1) keeps a cosine of 0.9999 when one int8 scale turns every score
into 0. So each output is also judged channel by channel, along the axis whose channels' ranges
differ most: every channel's cosine (pooled over samples) must reach ``MIN_CHANNEL_COSINE``, the
bound a layer must reach in ``layer_numerics``. Top-1 agreement (argmax along each output's last
axis, per position) and the largest absolute error are reported as information."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...layer_tolerance import MIN_LAYER_COSINE
from ...accuracy import agreement as script
from .base import Score, Task, per_sample, response_rows

MIN_CHANNEL_COSINE = MIN_LAYER_COSINE


class RawOutputs(Task):
    name = "raw"
    metric = "mean cosine vs reference × 100"
    labels_form = None  # agreement with the reference's log needs no labels
    needs_labels = False

    def __init__(self, response):
        super().__init__(response)
        self.sample_shapes: dict[str, tuple[int, ...]] = {}  # per output, seen when encoding

    def encode(self, outputs: dict[str, np.ndarray], count: int) -> np.ndarray:
        for name in self.response.outputs:
            self.sample_shapes.setdefault(name, tuple(outputs[name].shape[1:]))
        flat = np.concatenate([per_sample(outputs[n], count, n).astype(self.response.dtype)
                               for n in self.response.outputs], axis=1)
        return response_rows(flat, self.response.dtype)

    def layout(self) -> str:
        """``--layout`` of agreement.py: each output's per-sample shape, in response order."""
        if set(self.sample_shapes) != set(self.response.outputs):
            return ""
        return ",".join(f"{name}:{'x'.join(map(str, self.sample_shapes[name])) or 1}" for name in self.response.outputs)

    def score(self, log: Path, reference_log: Path, labels: Path | None) -> Score:
        dtype = np.dtype(self.response.dtype)
        layout = self.layout()
        result = script.compare(script.read_outputs(str(reference_log), dtype), script.read_outputs(str(log), dtype),
                                script.parse_layout(layout))
        command = self.script_command("agreement.py", "--reference-accuracy-file", reference_log,
                                      "--candidate-accuracy-file", log, "--dtype", self.response.dtype,
                                      *(("--layout", layout) if layout else ()))
        figures = {k: float(v) for k, v in result.items() if not isinstance(v, str)}
        return Score(100.0 * result["mean_cosine"], script.agreement_line(result), command, figures,
                     {k: v for k, v in result.items() if isinstance(v, str)})

    def problems(self, score: Score, target: float) -> list[str]:
        cosine = score.figures.get("min_channel_cosine")
        if cosine is None or cosine >= MIN_CHANNEL_COSINE:
            return []
        return [f"channel cosine {cosine:.4f} < {MIN_CHANNEL_COSINE} at {score.notes.get('worst_channel', '?')}: a slice "
                "of the output lost its own information although the pooled cosine is high (e.g. a shared int8 scale "
                "that zeroes small values concatenated with large ones)"]
