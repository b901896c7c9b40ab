"""Calibration samples: a folder of .npy/.npz files (nested or not), or one .npz, optionally
selected by an MLPerf calibration list (see ``sample_ids`` for the id forms) and passed through a
preprocessing hook.

Every sample is checked against the model's inputs (names, shapes, dtypes, finite values) and a
mismatch names the sample and the input. Arrays are loaded with ``allow_pickle=False``, one at a
time, so memory does not grow with the number of samples.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import UserInputError
from .model_inputs import ModelInput
from .sample_ids import ARRAY_SUFFIXES, candidate_files, ids_sha256, read_id_list, safe_relative, sample_key

Sample = dict[str, np.ndarray]
# What a corrupt .npy/.npz raises while its arrays are read (an .npz is a zip: a flipped byte is a
# bad CRC or header, found only when the member is read).
ARRAY_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)
Preprocess = Callable[[object], object]


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

    @property
    def ids_sha256(self) -> str:
        return ids_sha256(self.ids)

    def sample(self, sample_id: str) -> Sample:
        raw = self.loader(sample_id)
        if self.preprocess is not None:
            raw = _apply_preprocess(self.preprocess, raw, sample_id, self.inputs)
        return _validated(raw, sample_id, self.inputs)

    @property
    def batchable(self) -> bool:
        """Samples can be stacked along axis 0 only when every input has a batch axis there."""
        return all(m.has_batch_axis for m in self.inputs)

    def batches(self, batch_size: int) -> Iterator[tuple[list[str], Sample]]:
        """Samples stacked along the batch axis, up to ``batch_size`` at a time, in list order (one
        at a time, as they are, for a model with an input that has no batch axis). Only samples of
        the same shapes stack: a sample whose shapes differ from the batch's (a fully convolutional
        model calibrated on images of several sizes) starts the next batch."""
        if not self.batchable:
            batch_size = 1
        chunk: list[str] = []
        samples: list[Sample] = []
        for sample_id in self.ids:
            sample = self.sample(sample_id)
            if samples and (len(samples) == batch_size or _shapes(sample) != _shapes(samples[0])):
                yield chunk, _stacked(samples, self.inputs)
                chunk, samples = [], []
            chunk.append(sample_id)
            samples.append(sample)
        if samples:
            yield chunk, _stacked(samples, self.inputs)


def _shapes(sample: Sample) -> dict[str, tuple[int, ...]]:
    return {name: array.shape for name, array in sample.items()}


def _stacked(samples: list[Sample], inputs) -> Sample:
    if len(samples) == 1:
        return samples[0]
    return {m.name: np.concatenate([s[m.name] for s in samples], axis=0) for m in inputs}


def read_calibration_list(path: Path) -> list[str]:
    return read_id_list(path, "--calib-list")


def open_calibration_set(
    source: Path,
    inputs: list[ModelInput],
    calib_list: Path | None = None,
    preprocess: Preprocess | None = None,
    limit: int | None = None,
) -> CalibrationSet:
    samples = _open_source(source, inputs, "--calib")
    if calib_list is not None:
        ids = samples.select(read_calibration_list(calib_list), calib_list)
        list_hash = _sha256_bytes(calib_list.read_bytes())
    else:
        ids = samples.listing()
        list_hash = _sha256_bytes("\n".join(ids).encode())
    if limit is not None:
        if limit <= 0:
            raise UserInputError(f"--samples {limit}: must be positive")
        ids = ids[:limit]
    if not ids:
        raise UserInputError(f"--calib '{source}': the calibration set is empty (no .npy/.npz samples)")
    return CalibrationSet(ids, samples.load, inputs, list_hash, preprocess)


def open_all_samples(source: Path, inputs: list[ModelInput], flag: str) -> CalibrationSet:
    """Every sample of a folder (top level) or .npz, in sorted order."""
    samples = _open_source(source, inputs, flag)
    ids = samples.listing()
    if not ids:
        raise UserInputError(f"{flag} '{source}': no .npy/.npz samples")
    return CalibrationSet(ids, samples.load, inputs, _sha256_bytes("\n".join(ids).encode()))


def open_samples_by_id(source: Path, inputs: list[ModelInput], ids: list[str], origin: Path) -> CalibrationSet:
    """The samples ``ids`` (in that order) of a folder or .npz; ``origin`` names the list they came from."""
    samples = _open_source(source, inputs, "--dataset")
    chosen = samples.select(ids, origin)
    return CalibrationSet(chosen, samples.load, inputs, _sha256_bytes("\n".join(chosen).encode()))


def _open_source(source: Path, inputs: list[ModelInput], flag: str) -> "_Source":
    if not source.exists():
        raise UserInputError(f"{flag}: '{source}' not found")
    if source.is_dir():
        return _FolderSource(source, inputs, flag)
    if source.suffix == ".npz":
        return _NpzSource(source, inputs, flag)
    raise UserInputError(f"{flag} '{source}': expected a folder of .npy/.npz samples or an .npz file")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Source:
    """Samples by key; ``select`` maps the ids of a list onto keys, naming every id it cannot find."""

    where: Path

    def listing(self) -> list[str]:
        raise NotImplementedError

    def resolve(self, listed_id: str, list_path: Path) -> str | None:
        raise NotImplementedError

    def load(self, key: str) -> Sample:
        raise NotImplementedError

    def select(self, listed: list[str], list_path: Path) -> list[str]:
        chosen, missing = [], []
        for sample_id in listed:
            key = self.resolve(sample_id, list_path)
            if key is None:
                missing.append(sample_id)
            else:
                chosen.append(key)
        if missing:
            shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
            raise UserInputError(f"{list_path}: {len(missing)} id(s) have no .npy/.npz sample in '{self.where}': "
                                 f"{shown} (looked for <id>.npy, <id without extension>.npy and .npz)")
        return chosen


class _FolderSource(_Source):
    """A folder of samples, nested or not; a sample's key is its path relative to the folder,
    without .npy/.npz. Ids resolve only to files inside the folder (symbolic links included)."""

    def __init__(self, folder: Path, inputs: list[ModelInput], flag: str):
        self.where, self.inputs, self.flag = folder, inputs, flag
        self.root = folder.resolve()
        self.files: dict[str, Path] = {}

    def listing(self) -> list[str]:
        for path in sorted(self.where.iterdir()):
            if path.suffix in ARRAY_SUFFIXES and path.is_file():
                self._admit(path.stem, path)
        return sorted(self.files)

    def resolve(self, listed_id: str, list_path: Path) -> str | None:
        relative = safe_relative(listed_id, list_path)
        for candidate in candidate_files(relative):
            path = self.where / candidate
            if path.is_file():
                if not path.resolve().is_relative_to(self.root):
                    raise UserInputError(f"{list_path}: sample '{listed_id}' ({candidate}) leads outside "
                                         f"'{self.where}' through a symbolic link; copy the sample into the folder")
                key = str(candidate.with_suffix(""))
                self._admit(key, path)
                return key
        return None

    def _admit(self, key: str, path: Path) -> None:
        if path.suffix == ".npy" and len(self.inputs) != 1:
            raise UserInputError(
                f"{self.flag} '{self.where}': the model has {len(self.inputs)} inputs, so each sample must be an "
                f".npz holding one array per input name ({', '.join(m.name for m in self.inputs)}); "
                f"'{path.name}' is an .npy")
        self.files[key] = path

    def load(self, key: str) -> Sample:
        path = self.files[key]
        try:
            if path.suffix == ".npy":
                return {self.inputs[0].name: np.load(path, allow_pickle=False)}
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except ARRAY_READ_ERRORS as exc:
            raise UserInputError(f"sample '{key}' ({path.name}): not a readable array file ({why_unreadable(exc)})") from None


class _NpzSource(_Source):
    """Either one array per input name, samples along axis 0 (keys "0", "1"...), or one array per
    sample id (single-input models)."""

    def __init__(self, path: Path, inputs: list[ModelInput], flag: str):
        self.where = path
        try:
            self.archive = np.load(path, allow_pickle=False)
            keys = list(self.archive.files)
        except Exception as exc:
            raise UserInputError(f"{flag} '{path}': not a readable .npz ({why_unreadable(exc)})") from None
        names = {m.name for m in inputs}
        self.inputs = inputs
        self.stacked: dict[str, np.ndarray] | None = None
        try:
            if names <= set(keys):
                counts = {self.archive[n].shape[0] if self.archive[n].ndim else 0 for n in names}
                if len(counts) != 1:
                    raise UserInputError(f"{flag} '{path}': the input arrays hold different numbers of samples")
                self.stacked = {n: self.archive[n] for n in names}
                self.keys = [str(i) for i in range(counts.pop())]
            elif len(inputs) != 1:
                raise UserInputError(
                    f"{flag} '{path}': expected arrays named after the model inputs ({', '.join(sorted(names))})")
            else:
                self.keys = keys
        except ARRAY_READ_ERRORS as exc:
            raise UserInputError(f"{flag} '{path}': cannot read its arrays ({exc})") from None
        self.by_key = {sample_key(k): k for k in self.keys}

    def listing(self) -> list[str]:
        # Stacked samples are listed in their axis-0 order ("0", "1", ..., "10"), not as strings
        # ("0", "1", "10", ...): the first samples check the model and --holdout takes the last.
        return list(self.keys) if self.stacked is not None else sorted(self.keys)

    def resolve(self, listed_id: str, list_path: Path) -> str | None:
        if listed_id in self.keys:
            return listed_id
        return self.by_key.get(sample_key(listed_id))

    def load(self, key: str) -> Sample:
        try:
            if self.stacked is not None:
                index = int(key)
                return {n: a[index:index + 1] for n, a in self.stacked.items()}
            return {self.inputs[0].name: self.archive[key]}
        except ARRAY_READ_ERRORS as exc:
            raise UserInputError(f"'{self.where}': cannot read sample '{key}' ({why_unreadable(exc)})") from None


def why_unreadable(problem: BaseException) -> str:
    """numpy's reason, except where it misleads: a file without an array header (text, or
    anything else) is reported as "pickled data", with advice to load it unsafely, which qx never
    does."""
    text = " ".join(str(problem).split())
    if "pickle" in text:
        return "no .npy array header: a text or other file, or Python objects, which qx does not unpickle"
    return text


def _apply_preprocess(fn: Preprocess, raw: Sample, sample_id: str, inputs: list[ModelInput]) -> Sample:
    argument = raw[inputs[0].name] if len(inputs) == 1 and len(raw) == 1 else raw
    try:
        result = fn(argument)
    except Exception as exc:
        raise UserInputError(f"--preprocess failed on sample '{sample_id}': {type(exc).__name__}: {exc}") from None
    except SystemExit as exc:
        from ..user_code import exited

        raise UserInputError(exited(f"--preprocess, on sample '{sample_id}',", exc)) from None
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
    """The sample as the model takes it: the declared shape, with a batch of 1 added where axis 0
    is a batch. A sample may carry an extra leading batch of 1 either way (the form a batch-first
    writer gives every input)."""
    expected = model_input.sample_shape
    batch = (None,) if model_input.has_batch_axis else ()
    if _fits(array.shape, expected):
        return array[None] if batch else array
    if array.ndim == len(expected) + 1 and array.shape[0] == 1 and _fits(array.shape[1:], expected):
        return array if batch else array[0, ...]  # [0, ...]: a 0-d array, not a numpy scalar
    shown = "x".join("?" if d is None else str(d) for d in expected) or "a scalar"
    raise UserInputError(
        f"sample '{sample_id}', input '{model_input.name}': shape {'x'.join(map(str, array.shape)) or '() (a scalar)'}, "
        f"the model expects {shown} (optionally with a leading batch of 1)"
    )


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))
