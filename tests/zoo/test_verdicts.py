"""Verdict fidelity on the kinds of FP32 file that made verify wrong in both directions (issue 19):
for each, the honest candidate ``qx quantize`` writes PASSes every intensional check, and a broken
one built from it FAILs naming the right check. The FP32 files are written as their exporters
write them (not canonicalized): verify must replay the canonicalization quantize recorded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

ZOO_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(ZOO_DIR))

from samples import write_samples  # noqa: E402
from verdict_models import SAMPLE_VOCAB, VERDICT_ZOO  # noqa: E402

pytestmark = pytest.mark.slow

# What each honest candidate's replayed canonicalization must show: the transformations that made
# the old verify FAIL it ("reference Constant '', candidate Conv"; "reference Shape ..., candidate Reshape").
REPLAYED = {"legacy_transformer": ["-31 Constant", "-3 Unsqueeze"], "constant_batchnorm": ["-14 Constant",
            "FoldBatchNorm -2 BatchNormalization"], "detection_head": ["FoldChannelAffine -1 Add, -1 Mul"],
            "shape_ops_qdq": [], "savedmodel_transformer": [], "dlrm_legacy": ["-48 Constant"],
            "dlrm_dynamo": ["-4 Identity"]}


def _run_qx(*args):
    import contextlib
    import io

    from conftest import QxRun
    from mlperf_qx.cli.main import main

    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()) as out:
        code = main([str(a) for a in args])
    return QxRun(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module", params=sorted(VERDICT_ZOO))
def model(request, tmp_path_factory):
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    fp32 = VERDICT_ZOO[name](folder / "fp32.onnx")
    vocab = SAMPLE_VOCAB.get(name, 50)
    calib = write_samples(fp32, folder / "calib", count=12, vocab=vocab)
    validation = write_samples(fp32, folder / "validation", count=6, seed=1, prefix="val", vocab=vocab)
    int8 = folder / "int8.onnx"
    result = _run_qx("quantize", fp32, "--calib", calib, "--calib-list", calib / "list.txt", "-o", int8)
    assert result.code == 0, (name, result)
    return {"name": name, "fp32": fp32, "int8": int8, "calib": calib, "validation": validation, "folder": folder}


def _verify(model, candidate: Path, out: Path, *extra, mode="intensional"):
    return _run_qx("verify-equivalence", "--reference", model["fp32"], "--candidate", candidate, "--dataset",
                   model["validation"], "--sample-list", model["validation"] / "list.txt", "--task", "raw",
                   "--calib-list", model["calib"] / "list.txt", "--mode", mode, "--out", out, *extra)


def _checks(out: Path) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((out / "report.json").read_text())["intensional"]["checks"]}


def test_the_honest_candidate_passes_every_intensional_check(model, tmp_path):
    result = _verify(model, model["int8"], tmp_path / "v")
    checks = _checks(tmp_path / "v")
    assert {name: c["status"] for name, c in checks.items() if c["status"] != "PASS"} == {}, (model["name"], checks)
    assert result.code == 0, result
    replayed = checks["canonicalization_replayed"]["measured"]
    assert all(fragment in replayed for fragment in REPLAYED[model["name"]]), replayed


def _edit(model, tmp_path, edit) -> Path:
    proto = onnx.load(str(model["int8"]))
    edit(proto)
    path = tmp_path / "broken.onnx"
    onnx.save(proto, str(path))
    return path


def _int8_weight(proto, rank: int):
    return next(t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == rank)


def _move_a_weight(proto):
    """One int8 weight moved three steps."""
    tensor = _int8_weight(proto, 2) if any(len(t.dims) == 2 and t.data_type == onnx.TensorProto.INT8
                                           for t in proto.graph.initializer) else _int8_weight(proto, 4)
    values = numpy_helper.to_array(tensor).copy()
    flat = values.reshape(-1)
    flat[0] = flat[0] + 3 if flat[0] < 100 else flat[0] - 3
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))


def _rescale_per_channel(proto):
    """The first conv weight's output channels (a Gemm's rows where there is no conv) scaled by
    powers of two and requantized, with no inverse anywhere: a per-channel rescale verify must not
    take for rounding."""
    ranks = {len(t.dims) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    tensor = _int8_weight(proto, 4 if 4 in ranks else 2)
    scale_name = tensor.name.replace("_quantized", "_scale")
    scale_tensor = next(t for t in proto.graph.initializer if t.name == scale_name)
    step = float(numpy_helper.to_array(scale_tensor))
    values = numpy_helper.to_array(tensor).astype(np.float64) * step
    factors = 2.0 ** (np.arange(values.shape[0]) % 3 - 1)
    rescaled = values * factors.reshape(-1, *[1] * (values.ndim - 1))
    new_step = np.float32(np.abs(rescaled).max() / 127)
    tensor.CopyFrom(numpy_helper.from_array(np.clip(np.rint(rescaled / new_step), -127, 127).astype(np.int8), tensor.name))
    scale_tensor.CopyFrom(numpy_helper.from_array(np.array(new_step, np.float32), scale_name))


BROKEN = {"legacy_transformer": (_move_a_weight, "weights_half_step"),
          "constant_batchnorm": (_rescale_per_channel, "equalization_exact"),
          "detection_head": (_rescale_per_channel, "equalization_exact"),
          "shape_ops_qdq": (_move_a_weight, "weights_half_step"),
          "savedmodel_transformer": (_move_a_weight, "weights_half_step"),
          "dlrm_legacy": (_rescale_per_channel, "equalization_exact"), "dlrm_dynamo": (_move_a_weight, "weights_half_step")}


def test_a_broken_candidate_fails_the_named_check(model, tmp_path):
    edit, check = BROKEN[model["name"]]
    result = _verify(model, _edit(model, tmp_path, edit), tmp_path / "v")
    checks = _checks(tmp_path / "v")
    assert checks[check]["status"] == "FAIL", (model["name"], checks[check])
    assert result.code == 1 and result.out.strip().splitlines()[-1] == "FAILED", result
    if check == "equalization_exact":
        assert "rescaled without a recorded, exact inverse" in checks[check]["detail"], checks[check]


def test_a_second_canonicalization_changes_nothing(model):
    from mlperf_qx.ir.canonicalize import canonicalization_pipeline

    once, _ = canonicalization_pipeline()(ir.serde.deserialize_model(onnx.load(str(model["fp32"]))))
    first = ir.serde.serialize_model(once).SerializeToString()
    twice, records = canonicalization_pipeline()(ir.serde.deserialize_model(onnx.load_from_string(first)))
    assert [r.name for r in records if r.modified or r.op_changes or r.initializers[0] != r.initializers[1]] == []
    assert ir.serde.serialize_model(twice).SerializeToString() == first


def _collapse_head(proto):
    """The shared int8 scale of boxes and scores (what one Q/DQ on the concatenation does): one
    Q/DQ pair on the Concat's output with the step of its largest value, zeroing every score."""
    concat = next(n for n in proto.graph.node if n.op_type == "Concat")
    head = concat.output[0]
    proto.graph.initializer.extend([numpy_helper.from_array(np.array(400.0 / 127, np.float32), "collapse_scale"),
                                    numpy_helper.from_array(np.array(0, np.int8), "collapse_zero")])
    for node in proto.graph.node:
        node.input[:] = ["collapse_dq" if name == head else name for name in node.input]
    at = list(proto.graph.node).index(concat) + 1
    proto.graph.node.insert(at, helper.make_node("QuantizeLinear", [head, "collapse_scale", "collapse_zero"], ["collapse_q"]))
    proto.graph.node.insert(at + 1, helper.make_node("DequantizeLinear", ["collapse_q", "collapse_scale", "collapse_zero"],
                                                     ["collapse_dq"]))


def test_the_raw_task_fails_a_collapsed_slice_of_the_detection_head(tmp_path):
    """Extensional, under LoadGen: the head with its Concat and Reshape FP32 passes; the same head
    with the scores and boxes sharing one int8 scale fails on the score channels (a pooled cosine
    of 0.9999 would have passed it)."""
    folder = tmp_path / "m"
    folder.mkdir()
    model = {"fp32": VERDICT_ZOO["detection_head"](folder / "fp32.onnx"), "folder": folder}
    model["calib"] = write_samples(model["fp32"], folder / "calib", count=12)
    model["validation"] = write_samples(model["fp32"], folder / "validation", count=6, seed=1, prefix="val")
    model["int8"] = folder / "int8.onnx"
    assert _run_qx("quantize", model["fp32"], "--calib", model["calib"], "--calib-list", model["calib"] / "list.txt",
                   "--exclude", "Concat", "--exclude", "Reshape", "-o", model["int8"]).code == 0
    honest = _verify(model, model["int8"], tmp_path / "honest", "--duration-ms", "200", mode="extensional")
    assert honest.code == 0, honest
    broken = _verify(model, _edit(model, tmp_path, _collapse_head), tmp_path / "broken", "--duration-ms", "200",
                     mode="extensional")
    ext = json.loads((tmp_path / "broken" / "report.json").read_text())["extensional"]
    assert ext["candidate"]["score"]["figures"]["mean_cosine"] > 0.999  # the pooled figure alone would pass
    assert broken.code == 1 and "channel cosine" in broken.out, broken
    assert ext["score_problems"] and "detections axis 1 channel" in ext["score_problems"][0]
