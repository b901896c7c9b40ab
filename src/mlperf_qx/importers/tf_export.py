"""TensorFlow / Keras 3 reference -> onnx_ir model, through a tf.function and tf2onnx.

tf2onnx's ``from_keras`` does not work with Keras 3, so the model is wrapped in a ``tf.function``
with an explicit input signature and converted with ``tf2onnx.convert.from_function``. Loading
never executes code from the file: Keras ``safe_mode`` stays on (a Lambda layer is refused) and
custom objects are not resolved. A SavedModel is a graph, loaded without its Python code.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnx_ir as ir

from ..errors import UnsafeInputError, UserInputError, first_line
from ..input_spec import InputSpec
from ..provenance import package_versions, sha256_tree
from .base import ImportedModel
from .tf_onnx_fixes import (
    conversion_cause, fold_captured_inputs, name_shared_constants, order_from_outputs, refuse_unknown_ops,
    replace_erfc)

@contextlib.contextmanager
def _native_stderr_silenced():
    """TensorFlow's C++ start-up lines (oneDNN notes, absl's 'before InitializeLog') go straight to
    file descriptor 2, past TF_CPP_MIN_LOG_LEVEL; qx answers in one line, so they are dropped
    while TensorFlow loads and converts. Python errors are raised, and printed, after this."""
    try:
        saved = os.dup(2)
    except OSError:  # no real descriptor 2 (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _quiet():
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), _native_stderr_silenced():
        warnings.simplefilter("ignore")
        for name in ("tensorflow", "tf2onnx", "absl", "keras"):
            logging.getLogger(name).setLevel(logging.ERROR)
        yield


def import_tf(
    path: Path,
    inputs: list[InputSpec],
    *,
    signature: str | None,
    output_names: list[str] | None,
    opset: int,
    dynamic_batch: bool,
    custom_objects: Path | None = None,
) -> ImportedModel:
    if not path.exists():
        raise UserInputError(f"--model: '{path}' not found (expected a SavedModel folder, .keras or .h5 file)")
    with _quiet():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # read once, when TensorFlow loads
        # oneDNN kernels may sum in a thread-dependent order ("slightly different numerical results",
        # TF warns): constants grappler folds could then differ in the last bit between two exports,
        # and equal-constant deduplication with them. Read once, when TensorFlow loads.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        import tensorflow as tf

        if path.is_dir():
            call, declared, default_outputs = _load_saved_model(tf, path, signature)
        elif path.suffix in (".keras", ".h5"):
            if signature:
                raise UserInputError("--signature applies to SavedModel folders, not to Keras files")
            if custom_objects is not None:
                from ..user_code import import_file

                import_file(custom_objects, "--custom-objects")  # registers the user's named classes
            call, declared, default_outputs = _load_keras(path)
        else:
            raise UserInputError(f"--model '{path}': not a SavedModel folder, .keras or .h5 file")
        specs = _resolve_inputs(declared, inputs, path)
        names = _output_names(output_names, default_outputs)
        model = _convert(tf, call, specs, names, opset, dynamic_batch)

    def run_reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with _quiet():
            results = call({s.name: tf.constant(feeds[s.name]) for s in specs})
        return {n: np.asarray(r) for n, r in zip(names, results)}

    return ImportedModel(
        model=model,
        inputs=specs,
        output_names=names,
        run_reference=run_reference,
        framework="tf",
        source_hashes={"model_sha256": sha256_tree(path)},
        versions=package_versions(["tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "onnx-ir"]),
        exporter="tf2onnx (from_function)",
    )


Call = Callable[[dict], list]


def _load_keras(path: Path) -> tuple[Call, list[InputSpec], list[str]]:
    import keras

    # Layers a subclassed model builds in __init__ are named from Keras's process-wide counters
    # ('conv2d_1', then 'conv2d_1_1' on a second load); names reach the ONNX graph, so start
    # every load from fresh counters: the same file then always exports the same bytes.
    keras.backend.clear_session()
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text:
            raise UnsafeInputError(
                f"{path}: contains a Lambda layer or other code that Keras safe_mode refuses to run; "
                "rewrite it as a registered layer class"
            ) from exc
        if "locate" in text or "custom" in text.lower():
            raise UnsafeInputError(f"{path}: uses a custom object qx will not import ({_first_line(text)}); name the "
                                   "module that defines it with --custom-objects FILE.py") from exc
        raise UserInputError(f"{path}: cannot load the Keras model: {_first_line(text)}") from exc
    except TypeError as exc:
        text = _keras_cause(str(exc))
        if any(word in text.lower() for word in ("custom", "locate", "unknown", "registered")):
            raise UnsafeInputError(f"{path}: uses a custom object qx will not import ({text}); name the module that "
                                   "defines it with --custom-objects FILE.py") from exc
        raise UserInputError(f"{path}: Keras could not rebuild a layer from its saved config: {text}; the class's "
                             "__init__ must accept every argument its get_config() saves (add **kwargs)") from exc
    except Exception as exc:
        raise UserInputError(f"{path}: not a loadable Keras model ({type(exc).__name__}: {_first_line(str(exc))})") from exc
    declared = _keras_inputs(model)
    structure = _input_structure(model)
    output_keys = _output_keys(model)

    def call(feeds: dict) -> list:
        if structure is not None:  # a model built on a dict of inputs is called with that dict
            result = model({key: feeds[name] for key, name in structure.items()}, training=False)
        else:
            args = list(feeds.values())  # in the resolved inputs' order, which follows the model's
            result = model(args if len(args) > 1 else args[0], training=False)
        if output_keys is not None:
            return [result[key] for key in output_keys]
        return _as_list(result)

    outputs = output_keys or list(getattr(model, "output_names", None) or [])
    return call, declared, outputs


def _input_structure(model) -> dict[str, str] | None:
    """Dict key -> input name, for a functional model built on a dict of inputs (keras_hub's
    backbones take token_ids/padding_mask by key); None otherwise."""
    try:
        structure = model.input
    except (AttributeError, ValueError):  # a subclassed model has no symbolic input
        return None
    if isinstance(structure, dict):
        return {key: tensor.name for key, tensor in structure.items()}
    return None


def _output_keys(model) -> list[str] | None:
    """The keys of a model that returns a dict (keras_hub: sequence_output, pooled_output): they
    name the outputs, in one fixed order; ``output_names`` follows the layers, in another."""
    try:
        structure = model.output
    except (AttributeError, ValueError):
        return None
    return list(structure) if isinstance(structure, dict) else None


def _keras_cause(text: str) -> str:
    """Keras wraps the real error in paragraphs of advice and the whole config; its last
    'Error encountered ...' line is the cause (e.g. "__init__() got an unexpected keyword
    argument 'name'")."""
    for marker in ("Error encountered during deserialization:", "Exception encountered:"):
        if marker in text:
            return _first_line(text.rsplit(marker, 1)[1])
    return _first_line(text)


class _SubclassedInput(InputSpec):
    """The input of a subclassed Keras model: it has no named input tensor, so --input may name it."""


def _keras_inputs(model) -> list[InputSpec]:
    """Functional and Sequential models declare their inputs; a subclassed Keras 3 model has no
    ``inputs`` and only remembers the shape it was built with (its build config)."""
    try:
        tensors = model.inputs
    except AttributeError:
        tensors = None
    if tensors:
        return [InputSpec(t.name, tuple(d if d is not None else -1 for d in t.shape), _dtype_name(t.dtype))
                for t in tensors]
    build = (model.get_build_config() or {}) if hasattr(model, "get_build_config") else {}
    shape = build.get("input_shape")
    if not shape or not all(isinstance(d, (int, type(None))) for d in shape):
        return []
    return [_SubclassedInput("input", tuple(d if d is not None else -1 for d in shape), "float32")]


def _load_saved_model(tf, path: Path, signature: str | None) -> tuple[Call, list[InputSpec], list[str]]:
    if not (path / "saved_model.pb").is_file():
        raise UserInputError(f"--model '{path}': folder has no saved_model.pb, so it is not a SavedModel")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise UserInputError(f"{path}: cannot load the SavedModel: {_first_line(str(exc))}") from exc
    name = signature or "serving_default"
    available = sorted(loaded.signatures.keys())
    if name not in loaded.signatures:
        listed = ", ".join(available) if available else "none"
        raise UserInputError(f"{path}: no signature '{name}' (available: {listed}); pass --signature")
    function = loaded.signatures[name]
    _, kwargs = function.structured_input_signature
    declared = [
        InputSpec(key, tuple(d if d is not None else -1 for d in spec.shape.as_list()), _dtype_name(spec.dtype))
        for key, spec in sorted(kwargs.items())
    ]
    outputs = sorted(function.structured_outputs.keys())

    def call(feeds: dict) -> list:
        result = function(**{k: feeds[k] for k in kwargs})
        return [result[k] for k in outputs]

    call.keepalive = loaded  # the signature needs its object alive
    return call, declared, outputs


def _resolve_inputs(declared: list[InputSpec], given: list[InputSpec], path: Path) -> list[InputSpec]:
    """Use --input where given (it must name the model's inputs); fill unknown batch with 1."""
    if not declared and not given:
        raise UserInputError(f"{path.name}: a subclassed Keras model that declares no input shape; pass --input "
                             "NAME:SHAPE (e.g. --input image:1x32x32x3)")
    if not declared or (len(declared) == len(given) == 1 and isinstance(declared[0], _SubclassedInput)):
        if declared:
            _check_compatible(declared[0], InputSpec(declared[0].name, given[0].shape, given[0].dtype), path)
        return list(given)
    if given:
        known = {s.name for s in declared}
        unknown = [s.name for s in given if s.name not in known]
        if unknown:
            raise UserInputError(
                f"--input {', '.join(unknown)}: {path.name} has inputs {', '.join(sorted(known))}"
            )
        by_name = {s.name: s for s in given}
        missing = [s.name for s in declared if s.name not in by_name]
        if missing:
            raise UserInputError(f"--input missing for model input(s) {', '.join(missing)}")
        for spec in declared:
            _check_compatible(spec, by_name[spec.name], path)
        return [by_name[s.name] for s in declared]
    resolved = []
    for spec in declared:
        shape = tuple(1 if i == 0 and d == -1 else d for i, d in enumerate(spec.shape))
        if any(d == -1 for d in shape):
            raise UserInputError(
                f"{path.name}: input '{spec.name}' has unknown dimensions {spec.shape}; pass --input {spec.name}:SHAPE"
            )
        resolved.append(InputSpec(spec.name, shape, spec.dtype))
    return resolved


def _check_compatible(declared: InputSpec, given: InputSpec, path: Path) -> None:
    fits = len(declared.shape) == len(given.shape) and all(
        d in (-1, g) for d, g in zip(declared.shape, given.shape)
    )
    if not fits:
        shown = "x".join("?" if d == -1 else str(d) for d in declared.shape)
        raise UserInputError(f"--input {given}: {path.name} expects '{declared.name}' of shape {shown}")
    if declared.dtype != given.dtype:
        raise UserInputError(f"--input {given}: {path.name} expects '{declared.name}' as {declared.dtype}")


def _convert(tf, call: Call, specs: list[InputSpec], names: list[str], opset: int, dynamic_batch: bool) -> ir.Model:
    import tf2onnx

    signature = [
        tf.TensorSpec((None, *s.shape[1:]) if dynamic_batch else s.shape, getattr(tf, s.dtype), name=s.name)
        for s in specs
    ]

    @tf.function(input_signature=signature)
    def function(*args):
        return call(dict(zip([s.name for s in specs], args)))

    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    except Exception as exc:
        raise UserInputError(f"tf2onnx could not convert the model: {conversion_cause(exc)}") from exc
    model = ir.serde.deserialize_model(proto)
    fold_captured_inputs(model, function.get_concrete_function(*signature), len(signature))
    replace_erfc(model)
    refuse_unknown_ops(model, opset)
    name_shared_constants(model)
    order_from_outputs(model)
    _rename_io(model, [s.name for s in specs], names)
    if dynamic_batch:
        _name_batch_dimension(model)
    return model


def _name_batch_dimension(model: ir.Model) -> None:
    """tf2onnx calls the unknown batch 'unk__N'; name it 'batch' as the torch path does."""
    for value in (*model.graph.inputs, *model.graph.outputs):
        if value.shape is not None and len(value.shape) > 0 and not isinstance(value.shape[0], int):
            value.shape = ir.Shape([ir.SymbolicDim("batch"), *list(value.shape)[1:]])


def _rename_io(model: ir.Model, input_names: list[str], output_names: list[str]) -> None:
    """tf2onnx names outputs after TF tensors ('Identity:0'); give them the model's names."""
    for value, name in zip(model.graph.inputs, input_names):
        value.name = name
    if len(model.graph.outputs) != len(output_names):
        raise UserInputError(
            f"the converted model has {len(model.graph.outputs)} outputs but {len(output_names)} names were given"
        )
    for value, name in zip(model.graph.outputs, output_names):
        value.name = name


def _output_names(requested: list[str] | None, defaults: list[str]) -> list[str]:
    if requested:
        if defaults and len(requested) != len(defaults):
            raise UserInputError(f"--output-name given {len(requested)} times, the model has {len(defaults)} outputs")
        return list(requested)
    if defaults and len(set(defaults)) == len(defaults):
        return defaults
    return ["output"] if len(defaults) <= 1 else [f"output_{i}" for i in range(len(defaults))]


def _as_list(result) -> list:
    if isinstance(result, dict):
        return [result[k] for k in result]
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def _dtype_name(dtype) -> str:
    name = getattr(dtype, "name", str(dtype))
    return {"float": "float32"}.get(name, name)


def _first_line(text: str) -> str:
    return first_line(text, empty="no details")
