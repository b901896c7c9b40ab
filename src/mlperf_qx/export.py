"""The export pipeline shared by every framework:

imported model -> canonicalization passes -> provenance -> staged file -> FP32 check in
onnxruntime against the framework -> published model + manifest (or nothing, if the check fails).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import staged_outputs
from .errors import UserInputError, VerificationFailed, missing
from .importers.base import ImportedModel
from .input_spec import InputSpec, random_inputs
from .ir.canonicalize import canonicalization_pipeline
from .ir.pass_base import PassRecord
from .numeric_check import OutputComparison, Tolerance, compare_outputs, comparisons_as_dict
from .onnx_io import external_data_name, save_model
from .index_inputs import index_bounds
from .runtime import open_session
from .provenance import manifest, portable_command_line, record_in_model

CHECK_SEEDS = (0, 1)


@dataclass
class ExportResult:
    output: Path
    passes: list[PassRecord]
    comparisons: list[OutputComparison]
    external_data: bool
    tolerance: Tolerance
    provenance: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)


def export_model(
    imported: ImportedModel,
    output: Path,
    *,
    argv: list[str],
    opset: int,
    dynamic_batch: bool,
    tolerance: Tolerance,
    samples: list[Path] = (),
    external_data: str = "auto",
) -> ExportResult:
    model, records = canonicalization_pipeline()(imported.model)
    facts = {
        "framework": imported.framework,
        "exporter": imported.exporter,
        "opset": opset,
        "dynamic_batch": dynamic_batch,
        "inputs": [str(s) for s in imported.inputs],
        "outputs": imported.output_names,
        "passes": [{"name": r.name, "modified": r.modified} for r in records],
        "versions": imported.versions,
        "command": portable_command_line(argv),
        **imported.source_hashes,
    }
    model.producer_name = "mlperf-qx"
    model.producer_version = imported.versions.get("mlperf_qx", "")
    record_in_model(model, facts)

    check_sets = _check_inputs(imported.inputs, dynamic_batch, samples, index_bounds(model))
    with staged_outputs(output) as staging:
        staged = staging.path(output)
        uses_external = save_model(model, staged, external_data)
        if uses_external:
            staging.path(output.with_name(external_data_name(output)))
        comparisons = _fp32_check(staged, imported, check_sets, tolerance, set(index_bounds(model)))
        result = ExportResult(output, records, comparisons, uses_external, tolerance, facts)
        if not result.passed:
            worst = max(comparisons, key=lambda c: c.atol_needed)
            raise VerificationFailed(
                f"ONNX output '{worst.name}' differs from {imported.framework}: max abs error "
                f"{worst.max_abs_error:.3g} needs atol {worst.atol_needed:.3g} at rtol {tolerance.rtol:g} "
                f"(--tolerance {tolerance}); nothing written"
            )
        extra = {"fp32_check": {"tolerance": str(tolerance), "outputs": comparisons_as_dict(comparisons)},
                 "external_data": external_data_name(output) if uses_external else None}
        staging.path(output.with_name(output.name + ".manifest.json")).write_text(
            json.dumps(manifest(output, argv, facts, extra), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return result


def _check_inputs(specs: list[InputSpec], dynamic_batch: bool, samples: list[Path],
                  bounds: dict[str, int]) -> list[dict[str, np.ndarray]]:
    """The given samples, or else seeded random draws (and a batch of 3 with --dynamic-batch).
    Samples replace the draws: a model whose inputs random values do not represent (masks with
    structure, ids with meaning) is checked on what the user says its inputs look like."""
    if samples:
        return [_load_sample(sample, specs, dynamic_batch) for sample in samples]
    sets = [random_inputs(specs, seed, bounds) for seed in CHECK_SEEDS]
    if dynamic_batch:
        sets.append(random_inputs([s.with_batch(3) for s in specs], CHECK_SEEDS[-1] + 1, bounds))
    return sets


def _load_sample(path: Path, specs: list[InputSpec], dynamic_batch: bool) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UserInputError(f"--sample: file '{path}' {missing(path)}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:
        from .calibration.readers import why_unreadable

        raise UserInputError(f"{path}: not a readable .npy/.npz file ({why_unreadable(exc)})") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise UserInputError(f"{path}: the model has {len(specs)} inputs; pass an .npz with one array per input name")
        arrays = {specs[0].name: loaded}
    else:
        absent = [s.name for s in specs if s.name not in loaded.files]
        if absent:
            raise UserInputError(f"{path}: no array for input(s) {', '.join(absent)}")
        arrays = {s.name: loaded[s.name] for s in specs}
    for spec in specs:
        array = arrays[spec.name]
        expected = spec.shape[1:] if dynamic_batch else spec.shape
        actual = array.shape[1:] if dynamic_batch else array.shape
        if actual != expected:
            raise UserInputError(f"{path}: input '{spec.name}' has shape {array.shape}, expected {spec.shape}")
        if array.dtype != spec.numpy_dtype:
            raise UserInputError(f"{path}: input '{spec.name}' has dtype {array.dtype}, expected {spec.dtype}")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise UserInputError(f"{path}: input '{spec.name}' contains NaN or Inf")
    return arrays


def _fp32_check(model_path: Path, imported: ImportedModel, check_sets, tolerance: Tolerance,
                index_inputs: set[str]) -> list[OutputComparison]:
    session = open_session(model_path)
    worst: dict[str, OutputComparison] = {}
    for feeds in check_sets:
        expected = imported.run_reference(feeds)
        names = [o.name for o in session.get_outputs()]
        actual = dict(zip(names, session.run(names, feeds)))
        masks = _padding_masks(feeds, imported.inputs, index_inputs)
        expected, actual = _without_padding(expected, masks), _without_padding(actual, masks)
        for comparison in compare_outputs(expected, actual, tolerance):
            worst[comparison.name] = _merge(worst.get(comparison.name), comparison)
    return list(worst.values())


def _padding_masks(feeds: dict[str, np.ndarray], specs: list[InputSpec], index_inputs: set[str]) -> list[np.ndarray]:
    """The 0/1 masks among the inputs: integer or bool, at least (batch, positions), indexing no
    table (token ids do)."""
    masks = []
    for spec in specs:
        array = feeds[spec.name]
        if spec.name in index_inputs or array.ndim < 2 or array.dtype.kind not in "biu":
            continue
        if np.isin(array, (0, 1)).all():
            masks.append(array.astype(bool))
    return masks


def _without_padding(outputs: dict[str, np.ndarray], masks: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs at padded positions set to 0: nobody reads them, and where every key a query may
    see is padding (a causal model, left padding) the attention row is fully masked and each
    framework answers it its own way."""
    kept = {}
    for name, array in outputs.items():
        for mask in masks:
            if array.ndim >= mask.ndim and array.shape[:mask.ndim] == mask.shape and array.dtype.kind == "f":
                array = np.where(mask.reshape(mask.shape + (1,) * (array.ndim - mask.ndim)), array, 0)
        kept[name] = array
    return kept


def _merge(current: OutputComparison | None, new: OutputComparison) -> OutputComparison:
    if current is None:
        return new
    return OutputComparison(
        new.name,
        max(current.max_abs_error, new.max_abs_error),
        max(current.max_rel_error, new.max_rel_error),
        max(current.mean_abs_error, new.mean_abs_error),
        max(current.atol_needed, new.atol_needed),
        current.passed and new.passed,
    )
