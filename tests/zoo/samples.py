"""Calibration samples for zoo models, drawn from the ONNX model's own input signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

_NUMPY = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32}


def input_signature(model_path: Path) -> list[tuple[str, tuple[int, ...], type]]:
    graph = onnx.load(str(model_path), load_external_data=False).graph
    signature = []
    for value in graph.input:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in tensor.shape.dim)
        signature.append((value.name, shape, _NUMPY[tensor.elem_type]))
    return signature


def _draw(name: str, shape: tuple[int, ...], dtype, rng: np.random.Generator, vocab: int) -> np.ndarray:
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if "mask" in name:
        mask = np.ones(shape, dtype)
        keep = int(rng.integers(shape[-1] // 2, shape[-1] + 1))
        mask[..., keep:] = 0  # padded tail: the additive attention mask comes into play
        return mask
    return rng.integers(0, vocab, shape).astype(dtype)


def write_samples(model_path: Path, folder: Path, count: int = 16, vocab: int = 50, seed: int = 0,
                  prefix: str = "sample") -> Path:
    """``count`` samples as .npz files (one array per input), plus ``list.txt`` naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    signature = input_signature(model_path)
    names = []
    for index in range(count):
        arrays = {name: _draw(name, shape, dtype, rng, vocab) for name, shape, dtype in signature}
        name = f"{prefix}_{index:03d}"
        np.savez(folder / f"{name}.npz", **arrays)
        names.append(name)
    (folder / "list.txt").write_text("\n".join(names) + "\n")
    return folder
