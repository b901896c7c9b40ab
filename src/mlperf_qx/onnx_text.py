"""Text fields of an ONNX file that are not UTF-8 (a corrupt byte): protobuf hands them back as
bytes, and everything downstream (onnx_ir's serializer, sorting, printing) fails on them in its own
way. Found once, at load, by walking every string field of the model."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def first_non_utf8_field(message: Message, where: str = "model") -> str | None:
    """The path of the first string field holding bytes (e.g. ``model.graph.name``), or None."""
    for field, value in _set_fields(message):
        path = f"{where}.{field.name}"
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == FieldDescriptor.LABEL_REPEATED
        items = list(value) if repeated else [value]
        if field.type == FieldDescriptor.TYPE_STRING:
            for index, item in enumerate(items):
                if not isinstance(item, str):
                    return f"{path}[{index}]" if repeated else path
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                continue
            for index, item in enumerate(items):
                found = first_non_utf8_field(item, f"{path}[{index}]" if repeated else path)
                if found:
                    return found
    return None


def _set_fields(message: Message) -> list:
    """(field, value) of each set field but bytes fields (data, not text). A message with one
    (TensorProto's raw_data) is walked by its descriptor: ListFields would copy every weight out
    of protobuf (upb copies a bytes field on each read), about 0.1 s for a 436 MB model."""
    descriptor = message.DESCRIPTOR
    if not any(f.type == FieldDescriptor.TYPE_BYTES for f in descriptor.fields):
        return message.ListFields()
    return [(f, getattr(message, f.name)) for f in descriptor.fields
            if f.type != FieldDescriptor.TYPE_BYTES and _is_set(message, f)]


def _is_set(message: Message, field: FieldDescriptor) -> bool:
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == FieldDescriptor.LABEL_REPEATED
    return len(getattr(message, field.name)) > 0 if repeated else message.HasField(field.name)
