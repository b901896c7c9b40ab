"""``--equalize``: choose the factors, rewrite the FP32 model, and prove the rewrite harmless.

The rewritten FP32 model is run against the original on the first calibration samples before
anything is quantized; beyond ``EXACTNESS_RTOL`` (relative to the output's largest value) qx stops,
because a rewrite that changes the FP32 model is not an equalization.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
from threadpoolctl import threadpool_limits

from ..background import in_background
from ..calibration.readers import CalibrationSet
from ..errors import QxError
from ..runtime import open_session, usable_cores
from .cle import cle_pairs
from .equalization import EqualizationRecord, apply_equalization, outlier_join, smoothed_name
from .equalized_ranges import EqualizedRanges, equalized_ranges
from .runtime_check import join_samples
from .smoothquant import Candidate, GroupChoice, choose, find_candidates
from .smoothquant_observe import ChannelStats, observe
from .weights_by_reference import serialize_without_weights

MODES = ("smoothquant", "cle")
CHECK_SAMPLES = 4
EXACTNESS_RTOL = 1e-5


class EqualizationNotExact(QxError):
    exit_code = 1


@dataclass
class EqualizationResult:
    record: EqualizationRecord
    choices: list[GroupChoice] = field(default_factory=list)
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    ranges: EqualizedRanges | None = None  # the equalized model's minmax ranges, when the pass took them
    pending: Future | None = None  # the exactness check, running beside what follows (``check_beside``)

    def confirm(self) -> None:
        """The exactness check's verdict, once it is done: its figures set, or EqualizationNotExact.
        Nothing to wait for when it ran inside ``equalize``."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._judge(*pending.result())

    def _judge(self, reference: list[dict[str, np.ndarray]], rewritten: list[dict[str, np.ndarray]]) -> None:
        self.max_abs_error, self.max_rel_error = output_difference(reference, rewritten)
        if self.max_rel_error > EXACTNESS_RTOL:
            raise EqualizationNotExact(
                f"the equalized FP32 model differs from the original by {self.max_rel_error:.2e} (relative, max abs "
                f"{self.max_abs_error:.2e}) on the first calibration samples, above {EXACTNESS_RTOL:g}; not written")

    def thresholds(self) -> dict[str, tuple[float, str]]:
        """MatMul input tensor -> (threshold, why) where a clip below the maximum measured better."""
        chosen = {}
        for choice in self.choices:
            if choice.clip_amax is None:
                continue
            group = choice.group
            tensor = choice.input if group is None or group.inverse != "mul" else smoothed_name(group)
            after, before = choice.error_after, choice.error_before
            chosen[tensor] = (choice.clip_amax, f"clipped at {choice.clip:g}x its maximum: measured layer error per "
                                                f"token {after.per_row:.2e} vs {before.per_row:.2e} unscaled, pooled "
                                                f"{after.sqnr_db:.1f} dB / cosine {after.cosine:.4f}")
        return chosen

    def summary(self) -> str:
        parts = []
        if self.record.smoothquant:
            alphas = sorted({g.alpha for g in self.record.smoothquant if g.alpha is not None})
            gain = [c.error_before.per_row / c.error_after.per_row for c in self.choices
                    if c.group is not None and c.error_after.per_row > 0]
            parts.append(f"smoothquant on {len(self.record.smoothquant)} of {len(self.choices)} linear-layer inputs "
                         f"(alpha {', '.join(f'{a:g}' for a in alphas)}; layer error ÷{np.median(gain):.1f} median)"
                         if gain else f"smoothquant on {len(self.record.smoothquant)} inputs")
        clipped = sum(c.clip_amax is not None for c in self.choices)
        if clipped:
            parts.append(f"{clipped} MatMul inputs clipped below their maximum (measured better)")
        outside = [c.input for c in self.choices if not c.error_after.within_tolerance]
        if outside:
            parts.append(f"{len(outside)} outside verify's layer tolerance even so (estimated; e.g. {outside[0]})")
        if self.record.cle:
            parts.append(f"cross-layer equalization on {len(self.record.cle)} Conv pairs")
        parts.append(f"FP32 model unchanged: max abs error {self.max_abs_error:.2e}, max rel {self.max_rel_error:.2e}")
        return "; ".join(parts)


def equalize(model: ir.Model, modes: list[str], calib: CalibrationSet | None, skip: set[str],
             alpha: float | None = None, show_progress: bool = True, ranges_of: Sequence[str] = (),
             check_samples: int = CHECK_SAMPLES, check_beside: bool = False) -> EqualizationResult:
    """Rewrite ``model`` in place; returns the record (empty when nothing was worth rescaling).
    ``ranges_of``: tensors whose minmax ranges the observing pass also takes, handed on as the
    equalized model's (``equalized_ranges``), with its outputs on the ``check_samples`` samples
    the exactness check runs it on. ``check_beside``: the exactness check runs in the background
    (its session built and run while the caller goes on; mpnet: a second of one idle core) and
    ``confirm`` gives its verdict; the ranges then come without those outputs (a caller that
    checks its int8 model on held-out samples needs none)."""
    record, choices = EqualizationRecord(), []
    reference: list[dict[str, np.ndarray]] | None = None  # the original model's outputs on the check samples
    observed = None
    if "cle" in modes:
        record.cle = cle_pairs(model, skip)
    if "smoothquant" in modes and calib is not None:
        candidates = find_candidates(model, skip)
        if candidates:
            # The pass that observes the channels also gives the original's outputs on the check
            # samples (one session of the original model instead of two), and the ranges asked for.
            observed = observe(model, candidates, calib, show_progress, check_samples,
                               _with_group_tensors(model, ranges_of, candidates))
            reference = observed.outputs
            choices = choose_all(candidates, observed.stats, alpha)
            record.smoothquant = [c.group for c in choices if c.group is not None]
    result = EqualizationResult(record, choices)
    if not record:
        result.ranges = _ranges(model, record, observed, [])
        return result
    feeds = [calib.sample(i) for i in calib.ids[:check_samples]] if calib is not None else []
    if feeds and not reference:
        reference = model_outputs(model, feeds)
    apply_equalization(model, record)
    rewritten = []
    if feeds and check_beside:
        proto, weights = serialize_without_weights(model)  # here: the model is the caller's once this returns
        result.pending = in_background(lambda: (reference, model_outputs(proto, feeds, weights)),
                                       name="qx-exactness-check")
    elif feeds:
        rewritten = model_outputs(model, feeds)
        result._judge(reference, rewritten)
    result.ranges = _ranges(model, record, observed, rewritten)
    return result


def _with_group_tensors(model: ir.Model, ranges_of: Sequence[str], candidates: list[Candidate]) -> list[str]:
    """``ranges_of`` and what the equalized model's ranges are derived from: each group input (its
    count, and its refusal when not finite) and each linear layer's output where an outlier side
    path may be added back (``outlier_join``)."""
    if not ranges_of:
        return []
    nodes = {node.name: node for node in model.graph}
    joins = {outlier_join(nodes[name]).name for c in candidates if c.splittable for name in c.consumers}
    return sorted({*ranges_of, *(c.input for c in candidates), *joins})


def _ranges(model: ir.Model, record: EqualizationRecord, observed, rewritten: list[dict]) -> EqualizedRanges | None:
    """The equalized model's ranges from the observing pass, with its outputs on the check samples
    (calibration's references for the output SQNR check)."""
    if observed is None or observed.observers is None:
        return None
    ranges = equalized_ranges(model, record, observed.observers, {n: s.amax for n, s in observed.stats.items()})
    if rewritten:
        ranges.references = {name: join_samples([r[name] for r in rewritten]) for name in rewritten[0]}
    return ranges


def choose_all(candidates: list[Candidate], stats: dict[str, ChannelStats], alpha: float | None) -> list[GroupChoice]:
    """``choose`` for every group, the groups side by side on the CPU's cores, each group's
    MatMuls on one BLAS thread. Why: a group's trials are many small MatMuls (448 x 384 x 1152 on
    all-MiniLM-L6-v2) that a multi-threaded BLAS splits too finely, and its threads spin-wait
    (measured 2.5x slower than one thread under load); and one thread per MatMul makes every score the
    same whatever the number of cores, so the choices (and the written model) do not depend on
    the machine's core count. Groups are independent: the order they finish in changes nothing."""
    workers = max(1, min(len(candidates), usable_cores()))
    # Largest first (a trial costs rows x channels x outputs), so no large group starts last.
    largest_first = sorted(candidates, key=lambda c: -stats[c.input].rows.shape[0] * sum(w.size for w in c.weights))
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers, "qx-smoothquant") as pool:
        chosen = dict(zip((c.input for c in largest_first),
                          pool.map(lambda c: choose(c, stats[c.input], alpha), largest_first)))
    return [chosen[c.input] for c in candidates]


def model_outputs(model: ir.Model | onnx.ModelProto, feeds: list[dict], weights: dict | None = None
                  ) -> list[dict[str, np.ndarray]]:
    """The model's own outputs on each feed (an in-memory model's weights go to onnxruntime uncopied;
    ``weights``: those a proto made by ``serialize_without_weights`` refers to)."""
    proto, weights = serialize_without_weights(model) if isinstance(model, ir.Model) else (model, weights)
    session = open_session(proto, spin_between_runs=False, external_weights=weights)
    return [dict(zip([o.name for o in session.get_outputs()], session.run(None, feed))) for feed in feeds]


def output_difference(original: list[dict[str, np.ndarray]], rewritten: list[dict[str, np.ndarray]]
                      ) -> tuple[float, float]:
    """Largest absolute difference of two models' float outputs over the same feeds, and that
    over the output's largest magnitude (over all the feeds)."""
    abs_error = rel_error = 0.0
    for name in original[0] if original else ():
        if original[0][name].dtype.kind != "f":
            continue
        x = np.concatenate([np.atleast_1d(o[name]).astype(np.float64).ravel() for o in original])
        y = np.concatenate([np.atleast_1d(r[name]).astype(np.float64).ravel() for r in rewritten])
        error = float(np.max(np.abs(x - y))) if x.size else 0.0
        abs_error = max(abs_error, error)
        rel_error = max(rel_error, error / max(float(np.max(np.abs(x))), 1e-30) if x.size else 0.0)
    return abs_error, rel_error


def fp32_difference(original: onnx.ModelProto, rewritten: onnx.ModelProto, feeds: list[dict]) -> tuple[float, float]:
    """``output_difference`` of two models run on ``feeds``."""
    return output_difference(model_outputs(original, feeds), model_outputs(rewritten, feeds))
