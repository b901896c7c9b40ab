"""Third-party modules qx's start-up imports but its work seldom runs, loaded on first use instead.

``onnx_ir`` imports sympy at import time (0.6 s of the 1.3 s ``qx`` start-up, measured with
``python -X importtime``) for one thing: arithmetic on symbolic dimensions, which qx never does
(it infers shapes with ONNX's C++ inference); torch's exporter does use it. So the CLI puts a
stand-in for sympy in ``sys.modules``: ``import sympy`` succeeds at once, and the first read of
any attribute but the import system's own metadata runs the real package, unchanged, into that
same module object. onnx_ir's ``_symbolic_shapes`` (the expression parser, which reads sympy's
functions into a table as it is imported) is deferred the same way; its one caller, a
``SymbolicDim``'s expression, reads it only when asked for arithmetic. If a later onnx_ir moves
it, the stand-in is simply not made (the cost comes back, nothing breaks).

Not ``importlib.util.LazyLoader``: on Python 3.11 the import statement itself reads the
module's ``__spec__`` (to see whether it is still initializing), which makes LazyLoader load the
package at the very ``import sympy`` it was meant to defer, and its load is not thread-safe. Here
one lock guards the load; a re-entrant read by the package's own imports while it runs sees the
module as it stands, as any import in progress does. Only the CLI does this, before anything
imports those modules; as a library qx changes nothing.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
import types

DEFERRED = ("sympy", "onnx_ir._symbolic_shapes")
# What the import system reads from a module in sys.modules without using it (``import x`` checks
# ``__spec__._initializing``); everything else, ``__path__`` and ``__dict__`` included, loads it.
_IMPORT_METADATA = frozenset({"__spec__", "__name__", "__loader__", "__package__", "__class__"})
_LOAD = threading.RLock()
_loading: set[str] = set()


class _Deferred(types.ModuleType):
    def __getattribute__(self, attr: str):
        if attr not in _IMPORT_METADATA:
            _load(self)
        return types.ModuleType.__getattribute__(self, attr)


def _load(module: types.ModuleType) -> None:
    spec = types.ModuleType.__getattribute__(module, "__spec__")
    with _LOAD:
        if type(module) is not _Deferred or spec.name in _loading:
            return  # loaded, or being loaded by this thread (the package importing its own parts)
        _loading.add(spec.name)
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(spec.name, None)  # as a failed import leaves it: the next import retries
            raise
        finally:
            _loading.discard(spec.name)
            module.__class__ = types.ModuleType


def defer(names: tuple[str, ...] = DEFERRED) -> None:
    """Make each of ``names`` not yet imported load on its first use."""
    for name in names:
        if name in sys.modules:
            continue
        spec = _spec(name)
        if spec is None or spec.loader is None:
            continue  # not installed: the importer that needs it says so itself
        module = importlib.util.module_from_spec(spec)
        module.__class__ = _Deferred
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:  # the import system sets a submodule on its package only when it loads it
            setattr(importlib.import_module(parent), child, module)


def _spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The module's spec, without importing its parent package (``find_spec`` would)."""
    parent, _, _ = name.rpartition(".")
    if not parent:
        return importlib.util.find_spec(name)
    if parent in sys.modules:
        return None  # the parent is imported: whatever it imports at import time is loaded already
    package = importlib.util.find_spec(parent)
    if package is None or not package.submodule_search_locations:
        return None
    return importlib.machinery.PathFinder.find_spec(name, package.submodule_search_locations)
