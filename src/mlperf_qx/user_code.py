"""Importing code the user names on the command line (``FILE.py:NAME`` or ``package.module:NAME``).

Model definitions and preprocessing functions are code by nature; this is the only place qx runs
user Python, and only what the user passed explicitly.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .errors import UserInputError, missing


def import_target(spec: str, flag: str) -> tuple[ModuleType, str, Path | None]:
    """Return (module, NAME, source file) for ``FILE.py:NAME`` or ``package.module:NAME``."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise UserInputError(f"{flag} '{spec}' must be FILE.py:NAME or package.module:NAME")
    if target.endswith(".py"):
        return import_file(Path(target), flag), name, Path(target)
    try:
        module = importlib.import_module(target)
    except ImportError as exc:
        raise UserInputError(f"{flag} '{spec}': cannot import module '{target}' ({exc})") from None
    except SystemExit as exc:
        raise UserInputError(exited(f"{flag} '{spec}': importing '{target}'", exc)) from None
    source = Path(module.__file__) if getattr(module, "__file__", None) else None
    return module, name, source


def source_file(spec: str) -> Path | None:
    """The file of ``FILE.py:NAME``; None for ``package.module:NAME`` (or no NAME)."""
    target, sep, _ = spec.rpartition(":")
    return Path(target) if sep and target.endswith(".py") else None


def import_file(path: Path, flag: str) -> ModuleType:
    if not path.is_file():
        raise UserInputError(f"{flag}: file '{path}' {missing(path)}")
    module_name = f"qx_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # so the file can import its sibling modules
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UserInputError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except SystemExit as exc:  # sys.exit() at import would otherwise end qx, even "successfully"
        raise UserInputError(exited(f"{path}: importing it", exc)) from None
    except Exception as exc:
        raise UserInputError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(folder)
    return module


def load_function(spec: str, flag: str):
    module, name, _ = import_target(spec, flag)
    function = getattr(module, name, None)
    if not callable(function):
        raise UserInputError(f"{flag} '{spec}': '{name}' is not a function defined there")
    return function


def exited(doing: str, stop: SystemExit) -> str:
    """The one line for user code that called sys.exit() where qx expected it to return."""
    return f"{doing} called sys.exit({stop.code!r}); code qx runs must return, not exit"
