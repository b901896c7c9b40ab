"""The calibration phase of ``qx quantize``: a range per observed tensor, from ``--cache`` when it
is there, else from smoothquant's observing pass when it took them (minmax, ``equalized_ranges``),
else one streaming pass over the calibration samples, with where it came from (the list's and the
ids' sha256, for the provenance)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx_ir as ir

from ..background import released_in_background
from ..calibration.cache import CalibrationCache, TensorRange, read_cache
from ..calibration.model_inputs import model_inputs
from ..calibration.readers import CalibrationSet, open_calibration_set
from ..errors import UserInputError
from ..runtime import usable_cores
from .annotate import QuantPlan
from .calibrate import observe
from .equalized_ranges import EqualizedRanges
from .observers import MinMaxObserver, threshold
from .options import QuantizeOptions
from .scales import scale_from_amax
from .shared_scale import shared_inputs
from .spec import Method

CHECK_SAMPLES = 8  # output SQNR check; every extra sample costs two model runs
# Histogram thresholds (entropy, percentile, mse) need enough values per sample to be a
# distribution; below this a tensor takes its observed range instead.
MIN_VALUES_PER_SAMPLE = 256


@dataclass
class Calibration:
    """What the calibration phase hands on: a range per observed tensor, and where it came from."""

    ranges: dict[str, TensorRange]
    list_sha256: str
    ids_sha256: str
    samples: int
    batch: int = 0
    observers: dict = field(default_factory=dict)
    references: dict[str, np.ndarray] = field(default_factory=dict)
    calib: CalibrationSet | None = None
    cached: bool = False
    held_out: int = 0  # last ids of the list used by the precision search, not for ranges


def open_calibration(model: ir.Model, options: QuantizeOptions) -> CalibrationSet:
    return open_calibration_set(options.calib, model_inputs(model), options.calib_list, options.preprocess,
                                options.samples)


def calibrate(model: ir.Model, plan: QuantPlan, model_hash: str, options: QuantizeOptions,
              calib: CalibrationSet | None = None, ranges_calib: CalibrationSet | None = None,
              equalized: EqualizedRanges | None = None) -> Calibration:
    """Ranges of every observed tensor: from ``--cache`` when it is there, else from the pass that
    observed smoothquant's channels over ``ranges_calib`` when it took them all (``equalized``,
    minmax only: see ``equalized_ranges``), else one streaming pass over ``ranges_calib`` (the list
    less any held-out samples). The provenance names the whole list ``calib``: every sample used,
    for ranges or for the precision search, comes from it."""
    tensors = plan.observed_tensors()
    # Inputs of a Concat share its grid; their own ranges say whether one grid can hold them (shared_scale).
    extra = [t for t in shared_inputs(model) if t not in set(tensors)]
    if calib is None and options.calib is not None:  # the samples a cache must have been computed on
        calib = open_calibration(model, options)
    ranges_calib = ranges_calib or calib
    held_out = len(calib) - len(ranges_calib) if calib is not None else 0
    cached = usable_cache(options.cache, model_hash, options, calib, held_out)
    if cached is not None:
        ranges = _ranges_from_cache(cached, tensors)
        ranges.update({t: cached.tensors[t] for t in extra if t in cached.tensors})
        return Calibration(ranges, cached.calibration_list_sha256, cached.calibration_ids_sha256, cached.samples,
                           cached=True, calib=calib, held_out=cached.held_out)
    if calib is None:  # reached only without options.calib: opened here, as before
        calib = ranges_calib = open_calibration(model, options)
    observed = sorted({*tensors, *extra})
    taken = equalized.observers_for(observed) if equalized is not None and options.method is Method.MINMAX else None
    if taken is not None:
        return Calibration(ranges_from_observers(taken, options, len(ranges_calib)), calib.list_sha256,
                           calib.ids_sha256, len(calib), equalized.batch, taken, equalized.references, calib,
                           held_out=held_out)
    observation = observe(model, observed, ranges_calib, options.method, options.batch, options.show_progress,
                          keep_outputs=CHECK_SAMPLES)
    ranges = ranges_from_observers(observation.observers, options, len(ranges_calib))
    released_in_background(observation.spent)  # while the caller goes on, mostly on one core
    return Calibration(ranges, calib.list_sha256, calib.ids_sha256, len(calib), observation.batch,
                       observation.observers, observation.reference_outputs, calib, held_out=held_out)


def usable_cache(path: Path | None, model_hash: str, options: QuantizeOptions, calib: CalibrationSet | None,
                 held_out: int) -> CalibrationCache | None:
    """The ranges of ``path`` when they were computed as this run would compute them: the same model
    (with --equalize, the same factors), the same --method (and percentile), and, when this run has
    the calibration data, the same ids in the same order with the same held-out samples. Anything
    else is refused: reused, the ranges would be recorded as this run's calibration, and were not."""
    if path is None or not path.exists():
        return None
    cache = read_cache(path)
    fix = "; delete it or pass a new path to recalibrate"
    if cache.model_sha256 != model_hash:
        raise UserInputError(f"--cache '{path}' was computed for another model, or with other --equalize factors "
                             f"(sha256 {cache.model_sha256[:12]}…, this one {model_hash[:12]}…){fix}")
    percentile = options.percentile if options.method is Method.PERCENTILE else None
    if (cache.method, cache.percentile) != (options.method.value, percentile):
        asked = f"--method {options.method.value}" + (f" --percentile {percentile:g}" if percentile is not None else "")
        had = f"--method {cache.method}" + (f" --percentile {cache.percentile:g}" if cache.percentile is not None else "")
        raise UserInputError(f"--cache '{path}' holds ranges computed with {had}, this run asks for {asked}: "
                             f"pass {had}{fix}")
    if calib is not None and (cache.calibration_ids_sha256, cache.held_out) != (calib.ids_sha256, held_out):
        raise UserInputError(f"--cache '{path}' was computed on other calibration samples ({cache.samples} ids, "
                             f"{cache.held_out} held out; this run: {len(calib)} ids, {held_out} held out){fix}")
    return cache


def _ranges_from_cache(cache: CalibrationCache, tensors: list[str]) -> dict[str, TensorRange]:
    missing = [t for t in tensors if t not in cache.tensors]
    if missing:
        raise UserInputError(f"--cache has no range for tensor '{missing[0]}' (+{len(missing) - 1} more); "
                             "delete it to recalibrate")
    return {t: cache.tensors[t] for t in tensors}


def ranges_from_observers(observers: dict[str, MinMaxObserver], options: QuantizeOptions,
                          samples: int) -> dict[str, TensorRange]:
    def tensor_range(observer: MinMaxObserver) -> TensorRange:
        method, note = options.method, ""
        per_sample = observer.count / max(samples, 1)
        if method.needs_histogram and per_sample < MIN_VALUES_PER_SAMPLE:
            # A pooled squeeze-excitation vector has a few dozen values per sample: a histogram
            # threshold there clips real signal (seen: 0.110 clipped to 0.015), so take the range.
            method, note = Method.MINMAX, f"minmax ({per_sample:.0f} values per sample, too few for {options.method.value})"
        amax = threshold(observer, method, options.percentile)
        return TensorRange(float(amax), float(scale_from_amax(amax)), int(observer.count), note)

    if not options.method.needs_histogram:
        return {name: tensor_range(observer) for name, observer in observers.items()}
    # The threshold searches (a few ms per tensor, numba without the GIL) on every core; each
    # tensor's search is independent and map keeps the order, so the ranges are the same.
    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        return dict(zip(observers, pool.map(tensor_range, observers.values())))


def first_samples(calib: CalibrationSet | None, options: QuantizeOptions, inputs) -> list[dict[str, np.ndarray]]:
    """The first calibration samples, to check the written model with (none: a cached run without
    the calibration data)."""
    if calib is None:
        if options.cache is None or not options.calib.exists():
            return []
        calib = open_calibration_set(options.calib, inputs, options.calib_list, options.preprocess, options.samples)
    return [calib.sample(i) for i in calib.ids[:CHECK_SAMPLES]]
