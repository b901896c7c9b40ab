"""Fetch, once, the real ONNX files the zoo tests quantize: pretrained models shipped inside
registry wheels (PaddleOCR via rapidocr-onnxruntime, YOLOv8n via nudenet, silero VAD).

Run by the install step (README's quick start, ``.ci/run``), never at test time:

    python tests/zoo/fetch_real_models.py

``pip download --no-deps`` takes each pinned wheel from the package registry (nothing is
installed); the .onnx files are extracted into a git-ignored cache beside this script and checked
against the sha256 recorded here. A file already in the cache with the right hash is not fetched
again. The tests read the cache and fail, naming this script, when it is missing.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".real_models"

# wheel -> {path inside the wheel: (file name in the cache, sha256)}
MODELS = {
    "rapidocr-onnxruntime==1.4.4": {
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx":
            ("ppocr_v4_det.onnx", "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx":
            ("ppocr_v4_rec.onnx", "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx":
            ("ppocr_mobile_v2_cls.onnx", "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
    },
    "nudenet==3.4.2": {
        "nudenet/320n.onnx": ("nudenet_yolov8n_320.onnx", "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"),
    },
    "silero-vad==6.2.3": {
        "silero_vad/data/silero_vad.onnx": ("silero_vad.onnx", "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
    },
}


def cached(name: str) -> Path:
    """The cached file ``name``; a missing cache fails the caller with what to run."""
    path = CACHE / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the install step's `python tests/zoo/fetch_real_models.py` "
                                "(it downloads the pinned wheels once with pip download --no-deps)")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fresh(files: dict[str, tuple[str, str]]) -> bool:
    return all((CACHE / name).is_file() and _sha256(CACHE / name) == digest for name, digest in files.values())


def fetch(requirement: str, files: dict[str, tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                        "-d", folder, requirement], check=True)
        wheel = next(Path(folder).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for inner, (name, digest) in files.items():
                data = archive.read(inner)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise SystemExit(f"{requirement}: {inner} does not have the recorded sha256 {digest}")
                staged = CACHE / f".{name}.part"
                staged.write_bytes(data)
                staged.replace(CACHE / name)


def main() -> int:
    CACHE.mkdir(exist_ok=True)
    for requirement, files in MODELS.items():
        if _fresh(files):
            continue
        print(f"fetching {requirement} (pip download --no-deps) into {CACHE}", file=sys.stderr)
        fetch(requirement, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
