"""Provenance: where a model came from, recorded inside it and in a sidecar manifest.

The model's ``metadata_props`` hold only deterministic facts (hashes, versions, flags), so two runs
of the same command give byte-identical models. Timestamps and absolute paths go to the manifest.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import shlex
from pathlib import Path
from typing import Iterable, Mapping

import onnx_ir as ir

from . import __version__

METADATA_PREFIX = "qx."
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hash of a file, or of a folder's files (relative names and contents, in sorted order)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


def package_versions(names: Iterable[str]) -> dict[str, str]:
    versions = {"mlperf_qx": __version__}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def portable_command_line(argv: list[str], output_flags: tuple[str, ...] = ("-o", "--output")) -> str:
    """The command line with the output replaced and paths reduced to file names.

    Recorded inside the model, it must not depend on where the model was built, or two runs into
    different folders would give different bytes. The manifest keeps the full command line.
    """
    parts = ["qx"]
    args = argv[1:]
    skip_next = False
    for index, arg in enumerate(args):
        if skip_next:
            parts.append("<output>")
            skip_next = False
            continue
        if arg in output_flags:
            parts.append(arg)
            skip_next = True
            continue
        if any(arg.startswith(flag + "=") for flag in output_flags):
            parts.append(arg.split("=", 1)[0] + "=<output>")
            continue
        parts.append(_strip_directories(arg))
    return shlex.join(parts)


def _strip_directories(arg: str) -> str:
    # "dir/model.py:Net" -> "model.py:Net"; plain words and flags pass unchanged.
    head, sep, tail = arg.partition(":")
    if "/" in head or os.sep in head:
        return Path(head).name + sep + tail
    return arg


def record_in_model(model: ir.Model, facts: Mapping[str, object]) -> None:
    """Store facts as ``qx.<key>`` metadata props (JSON for anything that is not a string)."""
    for key in sorted(facts):
        value = facts[key]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        model.metadata_props[METADATA_PREFIX + key] = text


def read_from_model_props(props: Mapping[str, str]) -> dict[str, object]:
    facts: dict[str, object] = {}
    for key, text in props.items():
        if not key.startswith(METADATA_PREFIX):
            continue
        try:
            facts[key[len(METADATA_PREFIX):]] = json.loads(text)
        except json.JSONDecodeError:
            facts[key[len(METADATA_PREFIX):]] = text
    return facts


def manifest(model_path: Path, argv: list[str], facts: Mapping[str, object], extra: Mapping[str, object]) -> dict:
    return {
        "model": model_path.name,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command_line": shlex.join(["qx", *argv[1:]]),
        "working_directory": os.getcwd(),
        "provenance": dict(facts),
        **extra,
    }
