"""Saving and loading ONNX models: deterministic bytes, external data past 2 GB, safe paths."""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import onnx_ir as ir

from .errors import UnsafeInputError, UserInputError, missing
from .onnx_text import first_non_utf8_field

# Protobuf cannot serialize a message over 2 GiB; stay clear of it with room for the graph.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000


def initializer_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def external_data_name(model_path: Path) -> str:
    return model_path.name + ".data"


def save_model(model: ir.Model, path: Path, external_data: str = "auto", proto: onnx.ModelProto | None = None) -> bool:
    """Write ``model`` to ``path``; returns whether weights went to ``<path>.data`` beside it.

    ``external_data``: "auto" (only past the protobuf limit), "always" or "never". ``proto``:
    ``ir.serde.serialize_model(model)`` when the caller has it already (quantize serialized the
    candidate to check it): written as it is instead of serialized again, the same bytes as
    ``ir.save`` writes (it serializes the model and writes the proto with ``onnx.save``).
    """
    use_external = external_data == "always" or (
        external_data == "auto" and initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD_BYTES
    )
    if use_external:
        ir.save(model, path, external_data=external_data_name(path), size_threshold_bytes=1024)
    elif proto is not None:
        onnx.save(proto, path)
    else:
        ir.save(model, path)
    return use_external


def load_model_proto(path: Path, load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX file, refusing external data that points outside the model's folder, declares
    more bytes than its file holds, or an opset this onnx does not know."""
    return parse_model_file(path, read_model_file(path), load_external_data)


def read_model_file(path: Path) -> bytes:
    """The file's bytes, read once: the parser, onnx's checker and the hash can all use them
    (``parse_model_file``, ``check_model_file``) instead of each reading the file again."""
    if not path.is_file():
        raise UserInputError(f"{path}: ONNX model {missing(path)}")
    return path.read_bytes()


def parse_model_file(path: Path, data: bytes, load_external_data: bool = True) -> onnx.ModelProto:
    """``load_model_proto`` of the bytes ``read_model_file`` read from ``path``."""
    try:
        proto = onnx.load_from_string(data, _file_format(path))  # as onnx.load(path) reads it
    except Exception as exc:  # protobuf raises DecodeError and others for corrupt bytes
        raise UserInputError(f"{path}: not a readable ONNX model ({type(exc).__name__}); re-export it") from None
    if not proto.graph.node and not proto.graph.output:
        raise UserInputError(f"{path}: not an ONNX model (no graph); re-export it")
    corrupt_text = first_non_utf8_field(proto)  # protobuf hands back bytes for a string that is not UTF-8
    if corrupt_text is not None:
        raise UserInputError(f"{path}: {corrupt_text} is not UTF-8 text; the file is corrupt, re-export it")
    known = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and not 1 <= opset.version <= known:
            raise UserInputError(f"{path}: opset {opset.version} is unknown to onnx {onnx.__version__} (1..{known})")
    check_external_data_locations(proto, path)
    _check_tensor_sizes(proto, path)
    if load_external_data:
        read_external_data(proto, path)
    return proto


def read_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """The external data of ``proto`` (read from ``path``, locations already checked) into it."""
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: cannot read its external data: {exc}") from None


def check_model_file(path: Path, data: bytes, external_data: bool) -> None:
    """onnx's checker on the model file ``path`` whose bytes are ``data``: on those bytes, which
    saves onnx reading and parsing the file again in its own slower way (for a 436 MB encoder
    about a second, measured here). A model with ``external_data`` is checked by its path: the
    checker then looks for each data file beside it, which the bytes cannot tell it. Raises
    onnx's ValidationError (or another exception of the checker's)."""
    if external_data or _file_format(path) not in (None, "protobuf") or len(data) > onnx.checker.MAXIMUM_PROTOBUF:
        onnx.checker.check_model(str(path))
    else:
        onnx.checker.check_model(data)


def _file_format(path: Path) -> str | None:
    """The serialization onnx.load infers from the file's extension (None: binary protobuf)."""
    return onnx.serialization.registry.get_format_from_file_extension(path.suffix)


def has_external_data(proto: onnx.ModelProto) -> bool:
    return any(True for _ in _external_tensors(proto))


def _external_tensors(proto: onnx.ModelProto):
    """The tensors of ``proto`` (subgraphs too) whose data is in another file."""
    return (t for t in onnx.external_data_helper._get_all_tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL)


def _check_tensor_sizes(proto: onnx.ModelProto, path: Path) -> None:
    """Every tensor stored in the file holds as many values as its dims say (a corrupt byte in a
    length or a dim otherwise surfaces later as a reshape error deep inside a pass)."""
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue  # its byte count is checked against its file by check_external_data_locations
        count = math.prod(tensor.dims)
        try:
            data_type = ir.DataType(tensor.data_type)
            expected = math.ceil(count * data_type.itemsize) if tensor.HasField("raw_data") else None
        except (ValueError, TypeError):  # an unknown type code, or strings (no fixed item size)
            data_type, expected = None, None
        typed = {onnx.TensorProto.FLOAT: tensor.float_data, onnx.TensorProto.INT64: tensor.int64_data,
                 onnx.TensorProto.DOUBLE: tensor.double_data, onnx.TensorProto.INT32: tensor.int32_data}
        if expected is not None:
            actual = len(tensor.raw_data)
        elif not tensor.HasField("raw_data") and tensor.data_type in typed:
            expected, actual = count, len(typed[tensor.data_type])
        else:
            continue
        if actual != expected:
            raise UserInputError(f"{path}: tensor '{tensor.name}' holds {actual} {'bytes' if tensor.HasField('raw_data') else 'values'} "
                                 f"but its dims {list(tensor.dims)} need {expected}; the file is corrupt, re-export it")


def check_external_data_locations(proto: onnx.ModelProto, path: Path) -> None:
    folder = path.parent.resolve()
    for tensor in _external_tensors(proto):
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()  # resolve() follows symlinks: a link out is caught too
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UnsafeInputError(
                f"{path}: tensor '{tensor.name}' stores its data at '{location}', outside the model's "
                "folder; refusing to read it"
            )
        if not target.is_file():
            raise UserInputError(f"{path}: tensor '{tensor.name}': external data file '{location}' not found")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise UserInputError(f"{path}: tensor '{tensor.name}' has a non-numeric external-data offset or length") from None
        size = target.stat().st_size
        if offset < 0 or offset > size or (length >= 0 and offset + length > size):
            raise UserInputError(
                f"{path}: tensor '{tensor.name}' declares bytes {offset}..{offset + max(length, 0)} of '{location}', "
                f"which has {size}"
            )


def default_opset(proto: onnx.ModelProto) -> int:
    """The version of the default (ai.onnx) domain the model imports; onnx's own when it names none."""
    versions = {opset.domain: opset.version for opset in proto.opset_import}
    return int(versions.get("", versions.get("ai.onnx", onnx.defs.onnx_opset_version())))


def private_model(proto: onnx.ModelProto) -> ir.Model:
    """An onnx_ir model of a copy of ``proto``: onnx_ir wraps the proto's tensors, and a pass that
    renames an initializer would rename it in the caller's reference too."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return ir.serde.deserialize_model(copy)
