"""The module floors: a module may import only from its own floor or below. runtime.py (sessions)
sits below the quantizer and verify; the accuracy scripts sit below both the quantizer's
switchboard and verify, which import them."""

import ast
from pathlib import Path

from mlperf_qx.quant.op_specs import QOPERATOR_FORMS
from mlperf_qx.runtime import QOPERATOR_PREFIX, is_qoperator

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "mlperf_qx"


def _imported_modules(path: Path) -> set[str]:
    """The mlperf_qx modules ``path`` imports, as dotted names relative to the package."""
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            found.add(".".join((*base, node.module or "")).strip("."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlperf_qx"):
            found.add(node.module.removeprefix("mlperf_qx").strip("."))
    return found


def test_runtime_imports_neither_the_quantizer_nor_verify():
    imported = _imported_modules(PACKAGE / "runtime.py")
    assert not {m for m in imported if m.startswith(("quant", "verify"))}, imported


def test_every_qoperator_form_qx_writes_is_recognised_by_the_session_rule():
    assert QOPERATOR_FORMS and all(op.startswith(QOPERATOR_PREFIX) for op in QOPERATOR_FORMS)
    import onnx
    from onnx import helper

    for op in QOPERATOR_FORMS:
        graph = helper.make_graph([helper.make_node(op, [], [])], "g", [], [])
        assert is_qoperator(helper.make_model(graph)), op
    assert not is_qoperator(onnx.helper.make_model(helper.make_graph([helper.make_node("QuantizeLinear", [], [])],
                                                                     "g", [], [])))


def test_the_accuracy_scripts_import_nothing_of_qx_and_the_quantizer_not_verify():
    """The scripts run standalone (numpy only), so they import nothing of qx; the quantizer's
    switchboard scores with them and must not reach up into verify to do so. The one part of verify
    the quantizer may use is the intensional measurement itself (graph alignment, teacher-forced layer
    numerics, the split-layer record, the labels reader): quantize holds each layer to exactly what
    verify will measure instead of a copy of it; never the LoadGen harness, the tasks or the report."""
    measurement = {"verify.graph_match", "verify.layer_numerics", "verify.equalization_check", "verify.labels"}
    for script in (PACKAGE / "accuracy").glob("*.py"):
        assert _imported_modules(script) == set(), script.name
    for module in (PACKAGE / "quant").glob("*.py"):
        assert not {m for m in _imported_modules(module) if m.startswith("verify")} - measurement, module.name


def test_every_int8_op_qx_writes_is_seen_by_the_session_precision_rule():
    """runtime.py names int8 ops without the quantizer's tables; none the quantizer writes may be missed
    (a missed one would open an int8 model without session.x64quantprecision on a CPU without VNNI)."""
    from mlperf_qx.quant.op_specs import QUANTIZED_OP_TYPES
    from mlperf_qx.runtime import _is_int8_op

    assert all(_is_int8_op(op) for op in QUANTIZED_OP_TYPES), sorted(op for op in QUANTIZED_OP_TYPES if not _is_int8_op(op))
