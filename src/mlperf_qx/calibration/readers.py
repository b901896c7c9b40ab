"""Calibration samples: a folder of .npy/.npz files, or one .npz, optionally selected by an
MLPerf-style calibration list (one sample id per line) and passed through a preprocessing hook.

Every sample is checked against the model's inputs (names, shapes, dtypes, finite values) and a
mismatch names the sample and the input. Arrays are loaded with ``allow_pickle=False``, one at a
time, so memory does not grow with the number of samples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import UserInputError
from .model_inputs import ModelInput

Sample = dict[str, np.ndarray]
Preprocess = Callable[[object], object]
_SUFFIXES = (".npy", ".npz")


@dataclass
class CalibrationSet:
    """Sample ids in calibration order and a way to load each one, validated."""

    ids: list[str]
    loader: Callable[[str], Sample]
    inputs: list[ModelInput]
    list_sha256: str
    preprocess: Preprocess | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def sample(self, sample_id: str) -> Sample:
        raw = self.loader(sample_id)
        if self.preprocess is not None:
            raw = _apply_preprocess(self.preprocess, raw, sample_id, self.inputs)
        return _validated(raw, sample_id, self.inputs)

    def batches(self, batch_size: int) -> Iterator[tuple[list[str], Sample]]:
        """Samples stacked along the batch axis, ``batch_size`` at a time."""
        for start in range(0, len(self.ids), batch_size):
            chunk = self.ids[start:start + batch_size]
            samples = [self.sample(i) for i in chunk]
            yield chunk, {m.name: np.concatenate([s[m.name] for s in samples], axis=0) for m in self.inputs}


def read_calibration_list(path: Path) -> list[str]:
    if not path.is_file():
        raise UserInputError(f"--calib-list: file '{path}' not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: a calibration list must be UTF-8 text, one sample id per line") from None
    ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    seen: set[str] = set()
    for sample_id in ids:
        if sample_id in seen:
            raise UserInputError(f"{path}: sample id '{sample_id}' appears twice")
        seen.add(sample_id)
    if not ids:
        raise UserInputError(f"{path}: the calibration list is empty")
    return ids


def open_calibration_set(
    source: Path,
    inputs: list[ModelInput],
    calib_list: Path | None = None,
    preprocess: Preprocess | None = None,
    limit: int | None = None,
) -> CalibrationSet:
    available, loader = _open_source(source, inputs, "--calib")
    if calib_list is not None:
        ids = _select(read_calibration_list(calib_list), available, calib_list, source)
        list_hash = _sha256_bytes(calib_list.read_bytes())
    else:
        ids = sorted(available)
        list_hash = _sha256_bytes("\n".join(ids).encode())
    if limit is not None:
        if limit <= 0:
            raise UserInputError(f"--samples {limit}: must be positive")
        ids = ids[:limit]
    if not ids:
        raise UserInputError(f"--calib '{source}': the calibration set is empty (no .npy/.npz samples)")
    return CalibrationSet(ids, loader, inputs, list_hash, preprocess)


def open_samples_by_id(source: Path, inputs: list[ModelInput], ids: list[str], origin: Path) -> CalibrationSet:
    """The samples ``ids`` (in that order) of a folder or .npz; ``origin`` names the list they came from."""
    available, loader = _open_source(source, inputs, "--dataset")
    chosen = _select(ids, available, origin, source)
    return CalibrationSet(chosen, loader, inputs, _sha256_bytes("\n".join(chosen).encode()))


def _open_source(source: Path, inputs: list[ModelInput], flag: str):
    """(available sample ids, loader) of a folder of samples or an .npz."""
    if not source.exists():
        raise UserInputError(f"{flag}: '{source}' not found")
    if source.is_dir():
        return _folder_source(source, inputs)
    if source.suffix == ".npz":
        return _npz_source(source, inputs)
    raise UserInputError(f"{flag} '{source}': expected a folder of .npy/.npz samples or an .npz file")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _select(listed: list[str], available: dict[str, object], list_path: Path, source: Path) -> list[str]:
    """Map list ids onto available samples; an id may carry the file extension or not."""
    chosen, missing = [], []
    for sample_id in listed:
        stem = sample_id[:-4] if sample_id.endswith(_SUFFIXES) else sample_id
        if stem in available:
            chosen.append(stem)
        else:
            missing.append(sample_id)
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise UserInputError(f"{list_path}: {len(missing)} id(s) not found in '{source}': {shown}")
    return chosen


def _folder_source(folder: Path, inputs: list[ModelInput]):
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in _SUFFIXES and p.is_file()}
    if any(p.suffix == ".npy" for p in files.values()) and len(inputs) != 1:
        raise UserInputError(
            f"--calib '{folder}': the model has {len(inputs)} inputs, so each sample must be an .npz "
            f"holding one array per input name ({', '.join(m.name for m in inputs)})"
        )

    def load(sample_id: str) -> Sample:
        path = files[sample_id]
        try:
            if path.suffix == ".npy":
                return {inputs[0].name: np.load(path, allow_pickle=False)}
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except (ValueError, OSError, EOFError) as exc:
            raise UserInputError(f"sample '{sample_id}' ({path.name}): not a readable array file ({exc})") from None

    return files, load


def _npz_source(path: Path, inputs: list[ModelInput]):
    """Either one array per input name, samples along axis 0, or one array per sample id."""
    try:
        archive = np.load(path, allow_pickle=False)
        keys = list(archive.files)
    except Exception as exc:
        raise UserInputError(f"--calib '{path}': not a readable .npz ({exc})") from None
    names = {m.name for m in inputs}
    try:
        if names <= set(keys):
            counts = {archive[n].shape[0] if archive[n].ndim else 0 for n in names}
            if len(counts) != 1:
                raise UserInputError(f"--calib '{path}': the input arrays hold different numbers of samples")
            count = counts.pop()
            stacked = {n: archive[n] for n in names}
            ids = {str(i): i for i in range(count)}
            return ids, lambda sample_id: {n: a[ids[sample_id]:ids[sample_id] + 1] for n, a in stacked.items()}
        if len(inputs) != 1:
            raise UserInputError(
                f"--calib '{path}': expected arrays named after the model inputs ({', '.join(sorted(names))})")
        ids = {k: k for k in keys}
        return ids, lambda sample_id: {inputs[0].name: archive[sample_id]}
    except (ValueError, OSError) as exc:
        raise UserInputError(f"--calib '{path}': cannot read its arrays ({exc})") from None


def _apply_preprocess(fn: Preprocess, raw: Sample, sample_id: str, inputs: list[ModelInput]) -> Sample:
    argument = raw[inputs[0].name] if len(inputs) == 1 and len(raw) == 1 else raw
    try:
        result = fn(argument)
    except Exception as exc:
        raise UserInputError(f"--preprocess failed on sample '{sample_id}': {type(exc).__name__}: {exc}") from None
    if isinstance(result, dict):
        return result
    if len(inputs) == 1:
        return {inputs[0].name: np.asarray(result)}
    raise UserInputError("--preprocess must return a dict of input name -> array for a multi-input model")


def _validated(raw: Sample, sample_id: str, inputs: list[ModelInput]) -> Sample:
    missing = [m.name for m in inputs if m.name not in raw]
    if missing:
        raise UserInputError(f"sample '{sample_id}': no array for model input(s) {', '.join(missing)}")
    sample = {}
    for model_input in inputs:
        array = np.asarray(raw[model_input.name])
        if array.dtype != model_input.dtype:
            raise UserInputError(
                f"sample '{sample_id}', input '{model_input.name}': dtype {array.dtype}, the model expects "
                f"{model_input.dtype}"
            )
        array = _with_batch_axis(array, model_input, sample_id)
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise UserInputError(f"sample '{sample_id}', input '{model_input.name}': contains NaN or Inf")
        sample[model_input.name] = array
    return sample


def _with_batch_axis(array: np.ndarray, model_input: ModelInput, sample_id: str) -> np.ndarray:
    expected = model_input.sample_shape
    if _fits(array.shape, expected):
        return array[None]
    if array.ndim == len(expected) + 1 and array.shape[0] == 1 and _fits(array.shape[1:], expected):
        return array
    shown = "x".join("?" if d is None else str(d) for d in expected)
    raise UserInputError(
        f"sample '{sample_id}', input '{model_input.name}': shape {'x'.join(map(str, array.shape))}, "
        f"the model expects {shown} (optionally with a leading batch of 1)"
    )


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))
