"""Validate a safetensors file's header before any library reads it.

Layout: 8-byte little-endian header length N, N bytes of JSON, then the data region. Every tensor
must have a known dtype, a non-negative integer shape, and offsets inside the data region whose
length equals numel x itemsize; tensors must not overlap.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .errors import UnsafeInputError

_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_HEADER_BYTES = 100 << 20


def validate_safetensors(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise UnsafeInputError(f"{path}: truncated safetensors file (no header length)")
        (length,) = struct.unpack("<Q", prefix)
        if length == 0 or length > min(MAX_HEADER_BYTES, size - 8):
            raise UnsafeInputError(f"{path}: safetensors header length {length} does not fit the file ({size} bytes)")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsafeInputError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise UnsafeInputError(f"{path}: safetensors header is not a JSON object")
    data_size = size - 8 - length
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        spans.append(_checked_span(path, name, entry, data_size))
    spans.sort()
    for (begin_a, end_a, name_a), (begin_b, _, name_b) in zip(spans, spans[1:]):
        if begin_b < end_a:
            raise UnsafeInputError(f"{path}: tensors '{name_a}' and '{name_b}' overlap in the data region")


def _checked_span(path: Path, name: str, entry, data_size: int) -> tuple[int, int, str]:
    if not isinstance(entry, dict):
        raise UnsafeInputError(f"{path}: tensor '{name}' has a malformed header entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _ITEMSIZE:
        raise UnsafeInputError(f"{path}: tensor '{name}' has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise UnsafeInputError(f"{path}: tensor '{name}' has an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise UnsafeInputError(f"{path}: tensor '{name}' has invalid data_offsets {offsets!r}")
    begin, end = offsets
    numel = 1
    for d in shape:
        numel *= d
    if not 0 <= begin <= end <= data_size or end - begin != numel * _ITEMSIZE[dtype]:
        raise UnsafeInputError(
            f"{path}: tensor '{name}' declares {numel} x {dtype} at bytes {begin}..{end}, outside or inconsistent "
            f"with the {data_size}-byte data region")
    return begin, end, name
