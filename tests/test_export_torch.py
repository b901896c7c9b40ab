"""qx export --framework torch on several architectures: structure, numerics, determinism."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import torch

from conftest import ZOO, save_trained_looking_weights
from models import zoo

torch.manual_seed(0)


def _export(qx, tmp_path, cls_name, inputs, module, *extra, name="model.onnx"):
    weights = save_trained_looking_weights(module, tmp_path / f"{cls_name}.safetensors")
    out = tmp_path / name
    args = ["export", "--framework", "torch", "--model", f"{ZOO}:{cls_name}", "--weights", weights, "-o", out]
    for spec in inputs:
        args += ["--input", spec]
    result = qx(*args, *extra)
    assert result.code == 0, result
    return out, result


def _ort_outputs(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_mlp_with_batchnorm1d_exports_without_batchnorm(qx, tmp_path):
    module = zoo.MLP()
    out, result = _export(qx, tmp_path, "MLP", ["x:4x16"], module)
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops
    assert ops.count("Gemm") == 2
    x = np.random.default_rng(5).standard_normal((4, 16)).astype(np.float32)
    module.load_state_dict({k: v for k, v in __import__("safetensors.torch").torch.load_file(
        str(tmp_path / "MLP.safetensors")).items()})
    expected = module.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_ort_outputs(out, {"x": x})[0], expected, atol=1e-4, rtol=1e-4)
    assert "PASSED" in result.out


def test_encoder_block_keeps_attention_ops(qx, tmp_path):
    out, _ = _export(qx, tmp_path, "EncoderBlock", ["tokens:2x6x32"], zoo.EncoderBlock())
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"MatMul", "Softmax", "LayerNormalization"} <= ops
    assert "Identity" not in ops


def test_two_inputs_two_outputs_are_named(qx, tmp_path):
    out, _ = _export(qx, tmp_path, "TwoInTwoOut", ["image:1x3x5x5", "features:1x6"], zoo.TwoInTwoOut(),
                     "--output-name", "logits", "--output-name", "gate")
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["image", "features"]
    assert [o.name for o in model.graph.output] == ["logits", "gate"]
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}


def test_output_name_that_the_exporter_uses_inside_the_graph(qx, tmp_path):
    """The dynamo exporter names an nn.Embedding's value "embedding"; an output asked to be called
    that once made a model with a duplicate name (seen on all-mpnet-base-v2)."""
    out, _ = _export(qx, tmp_path, "OutlierEncoder", ["tokens:1x16:int64"], zoo.OutlierEncoder(),
                     "--output-name", "embedding")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["embedding"]
    produced = [o for n in model.graph.node for o in n.output]
    assert len(produced) == len(set(produced))


def test_factory_function_and_model_kwargs(qx, tmp_path):
    module = zoo.make_mlp(width=8)
    weights = save_trained_looking_weights(module, tmp_path / "w.safetensors")
    result = qx("export", "--framework", "torch", "--model", f"{ZOO}:make_mlp", "--model-kwargs", '{"width": 8}',
                "--weights", weights, "--input", "x:2x16", "-o", tmp_path / "m.onnx")
    assert result.code == 0, result


def test_pt_state_dict_loads_with_weights_only(qx, tmp_path):
    module = zoo.MLP()
    torch.save(module.state_dict(), tmp_path / "w.pt")
    result = qx("export", "--framework", "torch", "--model", f"{ZOO}:MLP", "--weights", tmp_path / "w.pt",
                "--input", "x:2x16", "-o", tmp_path / "m.onnx")
    assert result.code == 0, result


def test_two_runs_give_identical_bytes_and_provenance(qx, tmp_path):
    module = zoo.TwoInTwoOut()
    first, _ = _export(qx, tmp_path, "TwoInTwoOut", ["image:1x3x5x5", "features:1x6"], module, name="a.onnx")
    (tmp_path / "again").mkdir()
    second, _ = _export(qx, tmp_path / "again", "TwoInTwoOut", ["image:1x3x5x5", "features:1x6"], module,
                        name="a.onnx")
    assert first.read_bytes() == second.read_bytes()
    props = {p.key: p.value for p in onnx.load(str(first)).metadata_props}
    assert len(props["qx.weights_sha256"]) == 64 and len(props["qx.model_source_sha256"]) == 64
    assert json.loads(props["qx.versions"])["torch"].startswith("2.13")
    assert {p["name"] for p in json.loads(props["qx.passes"])} >= {"FoldBatchNorm", "FoldConstants"}
    assert "<output>" in props["qx.command"]
    manifest = json.loads((tmp_path / "a.onnx.manifest.json").read_text())
    assert "created_utc" in manifest and manifest["provenance"]["weights_sha256"] == props["qx.weights_sha256"]
    assert not any("created" in key for key in props)


def test_dynamic_batch_runs_at_other_batch_sizes(qx, tmp_path):
    out, _ = _export(qx, tmp_path, "MLP", ["x:1x16"], zoo.MLP(), "--dynamic-batch")
    for batch in (1, 7):
        x = np.zeros((batch, 16), np.float32)
        assert _ort_outputs(out, {"x": x})[0].shape == (batch, 5)


def test_legacy_exporter(qx, tmp_path):
    out, result = _export(qx, tmp_path, "Stateful", ["x:1x2x6x6"], zoo.Stateful(), "--exporter", "legacy")
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(out)).graph.node}


def test_external_data_always_writes_weights_beside_model(qx, tmp_path):
    out, _ = _export(qx, tmp_path, "MLP", ["x:2x16"], zoo.MLP(), "--external-data", "always")
    data = tmp_path / "model.onnx.data"
    assert data.is_file() and data.stat().st_size > 0
    x = np.ones((2, 16), np.float32)
    assert _ort_outputs(out, {"x": x})[0].shape == (2, 5)


def test_sample_file_is_checked_too(qx, tmp_path):
    sample = tmp_path / "s.npy"
    np.save(sample, np.full((2, 16), 3.0, np.float32))
    _export(qx, tmp_path, "MLP", ["x:2x16"], zoo.MLP(), "--sample", sample)


def test_tolerance_beyond_reach_exits_1_and_writes_nothing(qx, tmp_path):
    weights = save_trained_looking_weights(zoo.EncoderBlock(), tmp_path / "w.safetensors")
    out = tmp_path / "m.onnx"
    result = qx("export", "--framework", "torch", "--model", f"{ZOO}:EncoderBlock", "--weights", weights,
                "--input", "tokens:2x6x32", "--tolerance", "0,0", "-o", out)
    assert result.code == 1, result
    assert "needs atol" in result.err and "nothing written" in result.err
    assert list(tmp_path.iterdir()) == [weights]


def test_inspect_shows_io_ops_and_provenance(qx, tmp_path):
    out, _ = _export(qx, tmp_path, "MLP", ["x:2x16"], zoo.MLP())
    result = qx("inspect", out, "--json")
    assert result.code == 0
    info = json.loads(result.out)
    assert info["inputs"] == [{"name": "x", "dtype": "float", "shape": [2, 16]}]
    assert info["op_counts"]["Gemm"] == 2
    assert info["provenance"]["framework"] == "torch"
    table = qx("inspect", out)
    assert "op counts" in table.out and "Gemm" in table.out
