"""The digits reference and its int8 candidate, shared by the verify tests (built once per module)."""

import pytest

from conftest import REPO
from quant_fixtures import train_digits_cnn, write_digits_data

CALIB_LIST = REPO / "calib" / "digits_calibration.txt"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from mlperf_qx.cli.main import main

    folder = tmp_path_factory.mktemp("verify")
    data = write_digits_data(folder / "data")
    weights = train_digits_cnn(folder, epochs=40)
    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    assert main(["export", "--framework", "torch", "--model", f"{REPO}/examples/digits/model_torch.py:DigitsNet",
                 "--weights", str(weights), "--input", "image:1x1x8x8", "--dynamic-batch", "-o", str(fp32)]) == 0
    assert main(["quantize", str(fp32), "--calib", str(data / "calibration_candidates"), "--calib-list",
                 str(CALIB_LIST), "--method", "entropy", "-o", str(int8)]) == 0
    return {"fp32": fp32, "int8": int8, "data": data, "folder": folder}
