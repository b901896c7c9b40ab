"""Draw the digits calibration list: 100 ids, fixed seed, from the calibration candidates only.

The candidates are disjoint from the validation (accuracy) split by construction
(examples/digits/dataset.py), so no statistic is ever taken from the accuracy set.
Usage: python calib/draw_digits_list.py > calib/digits_calibration.txt
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "digits"))
from dataset import sample_name, split_indices  # noqa: E402

LIST_SEED = 7
LIST_SIZE = 100


def draw() -> list[str]:
    candidates = split_indices()["calibration_candidates"]
    chosen = np.sort(np.random.default_rng(LIST_SEED).choice(candidates, LIST_SIZE, replace=False))
    return [sample_name(int(i)) for i in chosen]


if __name__ == "__main__":
    print("\n".join(draw()))
