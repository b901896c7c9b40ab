"""Load a non-JIT PyTorch model: module definition from source, weights as plain data.

Weights never run code: safetensors, or a ``.pt``/``.pth`` state_dict through
``torch.load(weights_only=True)``. TorchScript is refused, since MLPerf asks for the eager model.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UnsafeInputError, UserInputError, first_line, missing
from ..user_code import exited, import_target

_TORCHSCRIPT_HINT = (
    "MLPerf asks for the non-JIT reference: pass the module's source as --model FILE.py:NAME "
    "and its state_dict (safetensors or torch.save(model.state_dict())) as --weights"
)


def resolve_model_source(spec: str) -> tuple[Any, Path | None]:
    """Return the object NAME of ``FILE.py:NAME`` or ``package.module:NAME`` and its source file."""
    module, name, source = import_target(spec, "--model")
    if not hasattr(module, name):
        available = sorted(
            n for n, obj in vars(module).items()
            if not n.startswith("_") and inspect.isclass(obj) and issubclass(obj, torch.nn.Module)
            and obj.__module__ == module.__name__
        )
        hint = f"; nn.Module classes there: {', '.join(available)}" if available else ""
        raise UserInputError(f"--model '{spec}': '{spec.rpartition(':')[0]}' has no attribute '{name}'{hint}")
    return getattr(module, name), source


def build_module(obj: Any, spec: str, kwargs_json: str | None) -> torch.nn.Module:
    """Instantiate NAME (a Module class or a factory) with ``--model-kwargs`` and check it is eager."""
    try:
        kwargs = json.loads(kwargs_json) if kwargs_json else {}
    except json.JSONDecodeError as exc:
        raise UserInputError(f"--model-kwargs is not valid JSON: {exc.msg}") from None
    if not isinstance(kwargs, dict):
        raise UserInputError("--model-kwargs must be a JSON object, e.g. '{\"width\": 32}'")
    _refuse_jit(obj, spec)
    if isinstance(obj, torch.nn.Module):
        module = obj
    elif callable(obj):
        try:
            module = obj(**kwargs)
        except TypeError as exc:
            raise UserInputError(f"--model '{spec}': cannot construct it with {kwargs or 'no arguments'}: {exc}") from None
        except SystemExit as exc:
            raise UserInputError(exited(f"--model '{spec}', constructing it,", exc)) from None
    else:
        raise UserInputError(f"--model '{spec}' is neither an nn.Module class nor a factory function")
    if not isinstance(module, torch.nn.Module):
        raise UserInputError(f"--model '{spec}' returned {type(module).__name__}, not a torch.nn.Module")
    _refuse_jit(module, spec)
    for child_name, child in module.named_modules():
        if isinstance(child, torch.jit.ScriptModule):
            raise UnsafeInputError(f"--model '{spec}': submodule '{child_name}' is TorchScript; {_TORCHSCRIPT_HINT}")
    return module


def _refuse_jit(obj: Any, spec: str) -> None:
    if isinstance(obj, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
        raise UnsafeInputError(f"--model '{spec}' is a TorchScript (scripted or traced) module; {_TORCHSCRIPT_HINT}")


def is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserInputError(f"--weights: file '{path}' {missing(path)}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if is_torchscript_archive(path):
        raise UnsafeInputError(f"{path}: this is a TorchScript archive, not a state_dict; {_TORCHSCRIPT_HINT}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for disallowed globals, RuntimeError for corrupt zips
        raise UnsafeInputError(
            f"{path}: refused to load with weights_only=True ({first_line(exc, 200)}); save a plain state_dict "
            "or use safetensors"
        ) from None
    return _as_state_dict(loaded, path)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from ..safetensors_check import validate_safetensors

    validate_safetensors(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise UserInputError(f"{path}: not a valid safetensors file ({exc})") from None


def _as_state_dict(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserInputError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    return dict(loaded)


def apply_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor], weights: Path) -> None:
    """Strict loading; a mismatch lists what is missing and what is unexpected. Tied parameters
    (one tensor under several names) need only one of their names in the file."""
    expected = module.state_dict()
    ties = tied_names(module)
    state = _fill_tied(state, ties, weights)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short_list([_with_tie(name, ties) for name in missing])}")
        if unexpected:
            parts.append(f"unexpected keys: {_short_list(unexpected)}")
        raise UserInputError(f"{weights}: state_dict does not match the model ({'; '.join(parts)})")
    wrong = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise UserInputError(f"{weights}: tensor shapes do not match the model: {_short_list(wrong)}")
    module.load_state_dict(state, strict=True)


def tied_names(module: torch.nn.Module) -> list[list[str]]:
    """Groups of state_dict names that are one tensor (GPT-2's lm_head.weight is its token
    embedding): same storage, offset, shape and strides."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if tensor.numel() == 0:
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))
        groups.setdefault(key, []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _fill_tied(state: dict[str, torch.Tensor], ties: list[list[str]], weights: Path) -> dict[str, torch.Tensor]:
    """``safetensors.torch.save_model`` keeps one name per tied tensor, as safetensors recommends:
    the others take that tensor. Where the file holds several names of a tie, they must agree."""
    filled = dict(state)
    for names in ties:
        present = [name for name in names if name in state]
        if not present:
            continue
        first = state[present[0]]
        for other in present[1:]:
            if state[other].shape != first.shape or not torch.equal(state[other], first):
                raise UserInputError(f"{weights}: '{present[0]}' and '{other}' are tied in the model (one tensor) "
                                     "but the file holds different values for them")
        for name in names:
            filled.setdefault(name, first)
    return filled


def _with_tie(name: str, ties: list[list[str]]) -> str:
    group = next((names for names in ties if name in names), None)
    return f"{name} (tied to {', '.join(n for n in group if n != name)})" if group else name


def _short_list(items: list[str], limit: int = 8) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
