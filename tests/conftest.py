import os
import sys
from pathlib import Path

# What qx sets before TensorFlow loads (importers/tf_export.py); tests may load TensorFlow first.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI never fails on a new random draw: every property and fuzz test draws the same examples on
# every run (derandomized, no example database). The randomized search for new failures is
# benchmarks/fuzz_campaign.py; what it finds is kept here as regression tests.
settings.register_profile("derandomized", derandomize=True, database=None)
settings.load_profile("derandomized")

from mlperf_qx.cli.main import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ZOO = Path(__file__).resolve().parent / "models" / "zoo.py"
CALIB_LIST = REPO / "calib" / "digits_calibration.txt"


class QxRun:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"QxRun(code={self.code}, err={self.err!r})"


@pytest.fixture
def qx(capsys):
    """Run the CLI in-process (torch import is paid once per session): qx("export", ...)."""

    def run(*args) -> QxRun:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return QxRun(code, captured.out, captured.err)

    return run


def save_trained_looking_weights(module, path: Path) -> Path:
    """Random weights plus non-trivial BatchNorm statistics (defaults would make BN an identity)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    state = module.state_dict()
    for name, tensor in state.items():
        if name.endswith("running_var"):
            state[name] = torch.rand(tensor.shape, generator=generator) + 0.5
        elif name.endswith("running_mean") or name.endswith("bias"):
            state[name] = torch.randn(tensor.shape, generator=generator) * 0.3
        elif name.endswith("weight") and tensor.dim() == 1:
            state[name] = torch.rand(tensor.shape, generator=generator) + 0.5
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def assert_user_error(result: QxRun, *fragments: str) -> None:
    """Exit 2, exactly one line on stderr, naming what went wrong, and no traceback."""
    assert result.code == 2, result
    # Progress log lines ("qx: ...", written when stderr is not a terminal and a step runs long, as
    # on a loaded CI machine) may come first; the error itself is one line.
    lines = [line for line in result.err.strip().splitlines() if not line.startswith("qx: ")]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The verify tests' trained digits reference and its int8 candidate (entropy, on CALIB_LIST)."""
    from quant_fixtures import export_trained_digits  # imports torch: only where the fixture is used

    folder = tmp_path_factory.mktemp("verify")
    fp32, data = export_trained_digits(folder)
    int8 = folder / "int8.onnx"
    assert main(["quantize", str(fp32), "--calib", str(data / "calibration_candidates"), "--calib-list",
                 str(CALIB_LIST), "--method", "entropy", "-o", str(int8)]) == 0
    return {"fp32": fp32, "int8": int8, "data": data, "folder": folder}
