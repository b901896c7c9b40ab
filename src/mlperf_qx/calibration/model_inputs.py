"""The inputs a model expects: names, shapes (None where symbolic) and dtypes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir


@dataclass(frozen=True)
class ModelInput:
    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        """Shape of one sample: the input shape without its batch dimension."""
        return self.shape[1:]

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}:{dims}:{self.dtype}"


def model_inputs(model: ir.Model) -> list[ModelInput]:
    inputs = []
    for value in model.graph.inputs:
        if value.is_initializer():
            continue
        shape = tuple(d if isinstance(d, int) else None for d in (value.shape or ()))
        dtype = np.dtype(value.dtype.numpy()) if value.dtype is not None else np.dtype(np.float32)
        inputs.append(ModelInput(value.name, shape, dtype))
    return inputs
