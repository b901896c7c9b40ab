"""What the export's FP32 check feeds the model: padding-pattern masks, and --sample instead of
the random draws."""

import textwrap

import numpy as np
import torch
from safetensors.torch import save_file

from mlperf_qx.input_spec import InputSpec, random_inputs


def _runs(row: np.ndarray) -> int:
    return int(np.count_nonzero(np.diff(row)))


def test_masks_are_padding_patterns_right_then_left():
    spec = [InputSpec("input_ids", (64, 16), "int64"), InputSpec("attention_mask", (64, 16), "int64")]
    right = random_inputs(spec, 0, {"input_ids": 100})["attention_mask"]
    left = random_inputs(spec, 1, {"input_ids": 100})["attention_mask"]
    for masks, first in ((right, 1), (left, None)):
        assert set(np.unique(masks)) <= {0, 1}
        assert all(_runs(row) <= 1 for row in masks)  # one run of ones, one of padding
        assert masks.sum(axis=1).min() >= 1  # never a fully masked row
        assert len(set(masks.sum(axis=1))) > 4  # the lengths vary
        if first is not None:
            assert (masks[:, 0] == first).all()  # right padding: the ones come first
    assert (left[:, -1] == 1).all() and (left[:, 0] == 0).any()  # left padding: the ones come last


def test_bool_masks_and_index_inputs():
    feeds = random_inputs([InputSpec("keep", (3, 8), "bool"), InputSpec("ids", (3, 8), "int64")], 0, {"ids": 50})
    assert feeds["keep"].dtype == np.bool_ and all(_runs(row) <= 1 for row in feeds["keep"].astype(int))
    assert feeds["ids"].max() > 1


_SQRT = textwrap.dedent('''
    import torch

    class SqrtNet(torch.nn.Module):
        """Defined on x >= 0 only: random normal draws give NaN, which no check can pass."""

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(4))

        def forward(self, x):
            return torch.sqrt(x) * self.scale
''')


def test_sample_replaces_the_random_draws(qx, tmp_path):
    source = tmp_path / "sqrt_net.py"
    source.write_text(_SQRT)
    weights = tmp_path / "w.safetensors"
    save_file({"scale": torch.full((4,), 2.0)}, str(weights))
    args = ["export", "--framework", "torch", "--model", f"{source}:SqrtNet", "--weights", weights,
            "--input", "x:2x4", "--exporter", "legacy", "-o", tmp_path / "m.onnx"]
    drawn = qx(*args)
    assert drawn.code == 1 and "nothing written" in drawn.err, drawn
    sample = tmp_path / "positive.npy"
    np.save(sample, np.linspace(0.5, 4.0, 8, dtype=np.float32).reshape(2, 4))
    given = qx(*args, "--sample", sample, "--json")
    assert given.code == 0, given
    assert (tmp_path / "m.onnx").is_file()


def test_outputs_at_padded_positions_are_not_compared():
    """A causal model's left-padded queries see only padding: frameworks answer those fully
    masked rows differently (GPT-2 via dynamo: 0.024), and nobody reads them."""
    from mlperf_qx.export import _padding_masks, _without_padding

    specs = [InputSpec("input_ids", (1, 4), "int64"), InputSpec("attention_mask", (1, 4), "int64")]
    feeds = {"input_ids": np.array([[1, 0, 0, 1]]), "attention_mask": np.array([[0, 0, 1, 1]])}
    masks = _padding_masks(feeds, specs, {"input_ids"})
    assert len(masks) == 1  # the ids index a table: not a mask, even where they happen to be 0/1
    logits = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    pooled = np.ones((1, 6), np.float32)
    kept = _without_padding({"logits": logits, "pooled": pooled}, masks)
    assert (kept["logits"][0, :2] == 0).all() and (kept["logits"][0, 2:] == logits[0, 2:]).all()
    assert (kept["pooled"] == pooled).all()  # no position axis: compared whole
