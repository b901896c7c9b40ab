"""Equalization (SmoothQuant with outlier split, cross-layer equalization): an exact FP32 rewrite,
recorded in the int8 model, rebuilt and proven by verify; an unrecorded rescale fails by name."""

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import assert_user_error
from mlperf_qx.quant.cle import cle_pairs
from mlperf_qx.quant.equalization import ClePair, EqualizationRecord, SmoothGroup, apply_equalization
from mlperf_qx.quant.equalize import fp32_difference
from transformer_fixtures import export_outlier_encoder, mean_cosine


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from mlperf_qx.cli.main import main

    folder = tmp_path_factory.mktemp("equalize")
    model = export_outlier_encoder(folder)
    plain, equalized = folder / "plain.onnx", folder / "equalized.onnx"
    common = ["--calib", str(model.calib), "--calib-list", str(model.calib_list)]
    assert main(["quantize", str(model.fp32), *common, "-o", str(plain)]) == 0
    assert main(["quantize", str(model.fp32), *common, "--equalize", "smoothquant", "-o", str(equalized)]) == 0
    return model, plain, equalized


def _props(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_record_round_trips_and_hashes_canonically():
    record = EqualizationRecord([SmoothGroup("x", ("mm1", "mm2"), "mul", (0, 3, -2), 0.5, (1,))],
                                [ClePair("conv1", "conv2", (1, -1))])
    again = EqualizationRecord.from_json(record.to_json())
    assert again == record and again.sha256() == record.sha256()
    assert EqualizationRecord.from_json(record.to_json().replace('"alpha":0.5', '"alpha":0.6')).sha256() != record.sha256()



def test_record_text_names_every_field_as_asdict_did():
    # to_json writes the fields one by one (asdict deep-copied every exponent): the text, and so
    # every hash and every record already stored in a model, is the one asdict gave.
    from dataclasses import asdict

    from mlperf_qx.quant.equalization import _pack

    record = EqualizationRecord([SmoothGroup("x", ("mm1",), "layernorm", (2, 0, -1), None),
                                 SmoothGroup("y", ("mm2", "mm3"), "mul", (0, 3, -2), 0.7, (1, 2))],
                                [ClePair("conv1", "conv2", (1, -1))])
    before = {"version": 1,
              "smoothquant": [{**asdict(g), "consumers": list(g.consumers), "exponents": _pack(g.exponents),
                               "split": list(g.split)} for g in record.smoothquant],
              "cle": [{**asdict(p), "exponents": _pack(p.exponents)} for p in record.cle]}
    assert record.to_json() == json.dumps(before, sort_keys=True, separators=(",", ":"))

def test_smoothquant_lifts_the_outlier_encoder_and_keeps_fp32_exact(encoder, qx):
    model, plain, equalized = encoder
    plain_cos, _ = mean_cosine(model.fp32, plain, model.held_out)
    equalized_cos, worst = mean_cosine(model.fp32, equalized, model.held_out)
    assert equalized_cos > plain_cos and equalized_cos >= 0.99 and worst >= 0.97, (plain_cos, equalized_cos, worst)
    record = EqualizationRecord.from_json(_props(equalized)["qx.equalization"])
    assert record.smoothquant, "no group equalized"
    exponents = np.concatenate([g.exponents for g in record.smoothquant])
    assert np.abs(exponents).max() <= 20 and exponents.any()
    summary = json.loads(_props(equalized)["qx.quantization"])["equalization"]
    assert summary["sha256"] == record.sha256() and summary["passes"] == ["smoothquant"]
    # The inverse Muls (and any outlier side path) stay FP32, with their reason.
    rebuilt = ir.serde.deserialize_model(onnx.load(str(model.fp32)))
    apply_equalization(rebuilt, record)
    abs_error, rel_error = fp32_difference(onnx.load(str(model.fp32)), ir.serde.serialize_model(rebuilt), model.held_out)
    assert rel_error <= 1e-5, (abs_error, rel_error)


def test_equalized_quantize_is_deterministic(encoder, tmp_path, qx):
    model, _, equalized = encoder
    again = tmp_path / "again.onnx"
    result = qx("quantize", model.fp32, "--calib", model.calib, "--calib-list", model.calib_list,
                "--equalize", "smoothquant", "-o", again)
    assert result.code == 0, result.err
    assert "FP32 model unchanged" in result.out
    assert again.read_bytes() == equalized.read_bytes()


def test_a_range_cache_written_by_an_equalized_run_gives_the_next_the_same_model(encoder, tmp_path, qx):
    # The first run takes its ranges in the pass that observes smoothquant's channels and writes
    # them; the second reads them back: the same record (the cache's key), the same model.
    model, _, _ = encoder
    cache, written = tmp_path / "ranges.json", []
    for name in ("first.onnx", "second.onnx"):
        written.append(tmp_path / name)
        result = qx("quantize", model.fp32, "--calib", model.calib, "--calib-list", model.calib_list,
                    "--equalize", "smoothquant", "--cache", cache, "-o", written[-1], "--json")
        assert result.code == 0, result.err
        assert json.loads(result.out)["cache_used"] == (name == "second.onnx")
    assert written[0].read_bytes() == written[1].read_bytes()


def _verify(qx, model, candidate, out):
    return qx("verify-equivalence", "--reference", model.fp32, "--candidate", candidate, "--dataset", model.calib,
              "--sample-list", model.calib_list, "--task", "raw", "--calib-list", model.calib_list,
              "--mode", "intensional", "--out", out)


def _check(out, name):
    checks = json.loads((out / "report.json").read_text())["intensional"]["checks"]
    return next(c for c in checks if c["name"] == name)


def test_verify_rebuilds_the_equalized_reference_and_passes(encoder, tmp_path, qx):
    model, _, equalized = encoder
    result = _verify(qx, model, equalized, tmp_path / "v")
    check = _check(tmp_path / "v", "equalization_exact")
    assert result.code == 0, result.out + result.err
    assert check["passed"] and "powers of two" in check["measured"], check
    # A split linear layer is compared whole (after its outlier Add), never by its partial sum.
    record = EqualizationRecord.from_json(_props(equalized)["qx.equalization"])
    split = [consumer for group in record.smoothquant if group.split for consumer in group.consumers]
    assert split, "the outlier encoder should need an outlier split"
    reference = onnx.load(str(model.fp32))
    rebuilt = ir.serde.deserialize_model(reference)
    apply_equalization(rebuilt, record)
    nodes = {n.name: n for n in ir.serde.serialize_model(rebuilt).graph.node}
    compared = {layer["tensor"] for layer in json.loads((tmp_path / "v" / "report.json").read_text())["layers"]}
    for consumer in split:
        assert nodes[consumer].output[0] not in compared
        assert nodes[f"{consumer}_outlier_add"].output[0] in compared
    assert f"{len(split)} split linear layers compared whole" in _check(tmp_path / "v", "layer_numerics")["measured"]


def test_verify_fails_a_rescale_without_its_recorded_inverse(encoder, tmp_path, qx):
    model, _, equalized = encoder
    stripped = onnx.load(str(equalized))
    kept = [p for p in stripped.metadata_props if p.key != "qx.equalization"]
    del stripped.metadata_props[:]
    stripped.metadata_props.extend(kept)
    candidate = tmp_path / "unrecorded.onnx"
    onnx.save(stripped, str(candidate))
    result = _verify(qx, model, candidate, tmp_path / "v")
    check = _check(tmp_path / "v", "equalization_exact")
    assert result.code == 1, result.out
    assert not check["passed"] and "rescaled without a recorded, exact inverse" in check["detail"], check


def test_verify_fails_a_record_that_does_not_match_its_hash(encoder, tmp_path, qx):
    model, _, equalized = encoder
    tampered = onnx.load(str(equalized))
    for prop in tampered.metadata_props:
        if prop.key == "qx.equalization":
            record = EqualizationRecord.from_json(prop.value)
            group = record.smoothquant[0]
            record.smoothquant[0] = SmoothGroup(group.input, group.consumers, group.inverse,
                                                tuple(e + 1 for e in group.exponents), group.alpha, group.split)
            prop.value = record.to_json()
    candidate = tmp_path / "tampered.onnx"
    onnx.save(tampered, str(candidate))
    result = _verify(qx, model, candidate, tmp_path / "v")
    check = _check(tmp_path / "v", "equalization_exact")
    assert result.code == 1 and not check["passed"] and "sha256" in check["detail"], check


def _conv_chain(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((6, 3, 3, 3)) * np.array([8, 0.1, 1, 3, 0.5, 1])[:, None, None, None]).astype(np.float32)
    b1 = rng.standard_normal(6).astype(np.float32)
    w2 = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cross_layer_equalization_balances_ranges_exactly():
    proto = _conv_chain()
    model = ir.serde.deserialize_model(proto)
    pairs = cle_pairs(model, set())
    assert [(p.first, p.second) for p in pairs] == [("conv1", "conv2")]
    apply_equalization(model, EqualizationRecord(cle=pairs))
    rewritten = ir.serde.serialize_model(model)
    feeds = [{"x": np.random.default_rng(i).standard_normal((1, 3, 8, 8)).astype(np.float32)} for i in range(3)]
    assert fp32_difference(proto, rewritten, feeds)[1] <= 1e-6

    def spread(p):
        inits = {t.name: numpy_helper.to_array(t) for t in p.graph.initializer}
        conv1 = next(n for n in p.graph.node if n.name == "conv1")
        ranges = np.abs(inits[conv1.input[1]]).reshape(6, -1).max(1)
        return ranges.max() / ranges.min()

    assert spread(rewritten) < spread(proto) / 4


def test_equalize_flags_are_checked(encoder, tmp_path, qx):
    model, _, _ = encoder
    out = tmp_path / "x.onnx"
    assert_user_error(qx("quantize", model.fp32, "--calib", model.calib, "--equalize", "magic", "-o", out),
                      "--equalize magic")
    assert_user_error(qx("quantize", model.fp32, "--calib", model.calib, "--alpha", "0.5", "-o", out), "--alpha")
    assert not out.exists()


def test_a_poor_int8_model_warns_with_the_remedies_not_yet_used(tmp_path):
    from mlperf_qx.quant.precision_search import Target
    from mlperf_qx.quant.publish import quality_warnings
    from mlperf_qx.quantize import QuantizeOptions

    layers = [{"tensor": "gelu_5", "sqnr_db": 3.0}, {"tensor": "ln_1", "sqnr_db": 9.0}]
    plain = quality_warnings({"embedding": 4.2}, layers, QuantizeOptions(tmp_path))
    assert len(plain) == 1 and "'embedding' is 4.2 dB" in plain[0] and "'gelu_5' 3.0 dB" in plain[0]
    assert "--equalize smoothquant" in plain[0] and "--target-cosine 0.99" in plain[0]
    tried = quality_warnings({"embedding": 4.2}, layers, QuantizeOptions(tmp_path, equalize=["smoothquant"],
                                                                          target=Target(cosine=0.99)))
    assert "--equalize" not in tried[0] and "--target" not in tried[0] and "--method mse" in tried[0]
    # A target the search met is the user's floor (mpnet at --target-cosine 0.993 is 18.7 dB).
    assert quality_warnings({"embedding": 18.7}, layers, QuantizeOptions(tmp_path), target_met=True) == []


def test_smoothquant_rescales_gemm_linears_from_the_torchscript_exporter(tmp_path, qx):
    """torch's TorchScript-based exporter writes 2-D Linears as Gemm(transB=1): smoothquant rescales
    B's columns, stays FP32-exact, and verify rebuilds and passes it."""
    import sys

    import torch
    from safetensors.torch import save_file

    from conftest import ZOO

    sys.path.insert(0, str(ZOO.parent))
    from zoo import OutlierHead, outlier_head_state

    torch.manual_seed(0)
    weights = tmp_path / "head.safetensors"
    save_file({k: v.contiguous() for k, v in outlier_head_state(OutlierHead()).items()}, str(weights))
    fp32 = tmp_path / "head.onnx"
    result = qx("export", "--framework", "torch", "--model", f"{ZOO}:OutlierHead", "--weights", weights,
                "--exporter", "legacy", "--input", "x:1x24", "-o", fp32)
    assert result.code == 0, result.err
    assert [n.op_type for n in onnx.load(str(fp32)).graph.node].count("Gemm") == 2
    rng = np.random.default_rng(0)
    calib = tmp_path / "calib"
    calib.mkdir()
    for index in range(40):
        np.save(calib / f"s{index:02d}.npy", rng.standard_normal((1, 24)).astype(np.float32))
    (tmp_path / "list.txt").write_text("".join(f"s{i:02d}\n" for i in range(40)))
    equalized = tmp_path / "equalized.onnx"
    result = qx("quantize", fp32, "--calib", calib, "--calib-list", tmp_path / "list.txt", "--equalize", "smoothquant",
                "-o", equalized)
    assert result.code == 0, result.err
    record = EqualizationRecord.from_json(_props(equalized)["qx.equalization"])
    gemms = {n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Gemm"}
    assert any(set(g.consumers) & gemms for g in record.smoothquant), record
    # Applied to the FP32 model, the record is an identity; the Gemm's B (out x in) is scaled by column.
    reference = onnx.load(str(fp32))
    rebuilt = ir.serde.deserialize_model(reference)
    apply_equalization(rebuilt, record)
    feeds = [{"x": rng.standard_normal((1, 24)).astype(np.float32)} for _ in range(8)]
    _, rel_error = fp32_difference(reference, ir.serde.serialize_model(rebuilt), feeds)
    assert rel_error <= 1e-5
    # The last Gemm ends the graph: no outlier side path could be added back after it, so none is split.
    ends = {n.name for n in reference.graph.node if set(n.output) & {o.name for o in reference.graph.output}}
    assert ends and not any(g.split for g in record.smoothquant if set(g.consumers) & ends)
    out = tmp_path / "v"
    result = qx("verify-equivalence", "--reference", fp32, "--candidate", equalized, "--dataset", calib,
                "--sample-list", tmp_path / "list.txt", "--task", "raw", "--calib-list", tmp_path / "list.txt",
                "--mode", "intensional", "--out", out)
    assert result.code == 0, result.out + result.err
    assert _check(out, "equalization_exact")["passed"]
