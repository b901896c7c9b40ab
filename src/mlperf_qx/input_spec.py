"""Parsing of ``--input NAME:1x3x32x32[:float32]`` specifications."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import UserInputError

_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(_DTYPES[self.dtype])

    def with_batch(self, batch: int) -> "InputSpec":
        if not self.shape:
            return self
        return InputSpec(self.name, (batch, *self.shape[1:]), self.dtype)

    def __str__(self) -> str:
        return f"{self.name}:{'x'.join(map(str, self.shape))}:{self.dtype}"


def parse_input_spec(text: str) -> InputSpec:
    """Parse one ``NAME:DxDxD[:dtype]``; a scalar input is written ``NAME:scalar``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UserInputError(
            f"--input '{text}' is not NAME:SHAPE[:DTYPE] (example: --input x:1x3x32x32:float32)"
        )
    name, shape_text = parts[0], parts[1]
    dtype = parts[2] if len(parts) == 3 else "float32"
    if not _NAME.match(name):
        raise UserInputError(f"--input '{text}': '{name}' is not a valid tensor name")
    if dtype not in _DTYPES:
        raise UserInputError(
            f"--input '{text}': unknown dtype '{dtype}' (choose from {', '.join(sorted(_DTYPES))})"
        )
    if shape_text == "scalar":
        return InputSpec(name, (), dtype)
    try:
        shape = tuple(int(d) for d in shape_text.lower().split("x"))
    except ValueError:
        raise UserInputError(
            f"--input '{text}': shape '{shape_text}' must be positive integers joined by 'x'"
        ) from None
    if any(d <= 0 for d in shape):
        raise UserInputError(f"--input '{text}': every dimension must be positive")
    return InputSpec(name, shape, dtype)


def parse_input_specs(texts: list[str]) -> list[InputSpec]:
    specs = [parse_input_spec(t) for t in texts]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserInputError(f"--input names must be unique; repeated: {', '.join(duplicates)}")
    return specs


def random_inputs(specs: list[InputSpec], seed: int, index_bounds: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs for numerical checks: standard normal floats; integers drawn across
    ``index_bounds[name]`` (the embedding table an id input indexes); other integer and bool
    inputs (attention masks) as padding patterns, see ``padding_masks``."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        dtype = spec.numpy_dtype
        bound = (index_bounds or {}).get(spec.name)
        if np.issubdtype(dtype, np.floating):
            arrays[spec.name] = rng.standard_normal(spec.shape).astype(dtype)
        elif bound is not None:
            arrays[spec.name] = rng.integers(0, bound, spec.shape).astype(dtype)
        else:
            arrays[spec.name] = padding_masks(spec.shape, rng, left=seed % 2 == 1).astype(dtype)
    return arrays


def padding_masks(shape: tuple[int, ...], rng: np.random.Generator, *, left: bool) -> np.ndarray:
    """0/1 masks as tokenizers write them: along the last axis each row keeps a drawn length of
    ones (at least one) and pads the rest with zeros, after the ones or, with ``left``, before
    them. Random 0/1 masks are not real inputs: a causal model whose first position is masked
    has fully masked attention rows, whose outputs legitimately differ between frameworks."""
    if not shape:
        return np.ones((), np.int64)
    length = shape[-1]
    kept = rng.integers(1, length + 1, shape[:-1]) if length else np.zeros(shape[:-1], np.int64)
    positions = np.arange(length)
    if left:
        positions = positions[::-1]
    return (positions < kept[..., None]).astype(np.int64)
