"""Seeded stand-ins for the inputs the real zoo models were trained on, preprocessed as their own
pipelines do: text-like images (dark strokes on a light page) for PaddleOCR, a scene of shapes for
YOLOv8n, a voiced signal for silero VAD. Not real data, but inside the distribution the weights
expect (random noise drives PaddleOCR's detector into a corner no image reaches)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _page(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An RGB page in [0, 1]: light paper, a few dark horizontal strokes and glyph-like blocks."""
    page = np.full((3, height, width), 0.9, np.float32) + rng.normal(0, 0.03, (3, height, width)).astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):
        top, left = int(rng.integers(0, height - 8)), int(rng.integers(0, width // 2))
        line_height, line_width = int(rng.integers(4, 10)), int(rng.integers(width // 4, width - left))
        for x in range(left, left + line_width, 4):  # glyphs: short vertical and horizontal bars
            page[:, top:top + line_height, x:x + 2] = 0.1
            if rng.random() < 0.5:
                page[:, top + line_height // 2, x:x + 4] = 0.1
    return np.clip(page, 0, 1)


def ppocr_det(rng, size=(64, 96)) -> dict:
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return {"x": ((_page(rng, *size) - mean) / std)[None]}


def ppocr_line(rng, size) -> dict:
    """rec and cls take one text line, normalized to [-1, 1]."""
    return {"x": ((_page(rng, *size) - 0.5) / 0.5)[None]}


def yolo_scene(rng, size=160) -> dict:
    image = np.full((3, size, size), rng.uniform(0.3, 0.7), np.float32)
    for _ in range(4):
        top, left = rng.integers(0, size - 32, 2)
        h, w = rng.integers(16, 64, 2)
        image[:, top:top + h, left:left + w] = rng.uniform(0, 1, (3, 1, 1))
    return {"images": np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1).astype(np.float32)[None]}


def voice(rng, samples=512) -> dict:
    """A chunk of a voiced signal at 16 kHz (harmonics of a pitch under an envelope, plus noise),
    the recurrent state a previous chunk would leave (zeros for the first), and the sample rate."""
    t = np.arange(samples) / 16000.0
    pitch = rng.uniform(100, 250)
    signal = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
    signal = 0.3 * signal * np.hanning(samples) + rng.normal(0, 0.01, samples)
    state = np.zeros((2, 1, 128), np.float32) if rng.random() < 0.5 else rng.normal(0, 0.3, (2, 1, 128))
    return {"input": signal.astype(np.float32)[None], "state": state.astype(np.float32), "sr": np.array(16000, np.int64)}


REAL_MODELS = {
    # name -> (cached file, sample maker)
    "ppocr_det": ("ppocr_v4_det.onnx", ppocr_det),
    "ppocr_rec": ("ppocr_v4_rec.onnx", lambda rng: ppocr_line(rng, (48, 96))),
    "ppocr_cls": ("ppocr_mobile_v2_cls.onnx", lambda rng: ppocr_line(rng, (48, 192))),
    "yolov8n": ("nudenet_yolov8n_320.onnx", yolo_scene),
    "silero_vad": ("silero_vad.onnx", voice),
}


def write_real_samples(name: str, folder: Path, count: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    make = REAL_MODELS[name][1]
    for index in range(count):
        np.savez(folder / f"sample_{index:03d}.npz", **make(rng))
    return folder
