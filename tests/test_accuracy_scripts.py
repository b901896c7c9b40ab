"""The standalone accuracy scripts' arithmetic on hand-made logs (numpy only, as MLPerf runs them)."""

import json
import subprocess
import sys

import numpy as np

from conftest import REPO

SCRIPTS = REPO / "src" / "mlperf_qx" / "accuracy"
sys.path.insert(0, str(SCRIPTS))

import spans  # noqa: E402


def _logits(length, start, end):
    logits = np.full((length, 2), -5.0, np.float32)
    logits[start, 0] = logits[end, 1] = 5.0
    return logits


def test_best_span_keeps_start_before_end_and_within_the_length_limit():
    logits = _logits(12, 7, 2)  # the best end lies before the best start
    logits[9, 1] = 4.0
    assert spans.best_span(logits) == (7, 9)
    long = _logits(64, 1, 40)
    long[20, 1] = 1.0
    assert spans.best_span(long, max_answer_length=30) == (1, 20)


def test_span_f1_and_exact_match():
    assert spans.span_f1((3, 5), (3, 5)) == 1.0
    assert spans.span_f1((3, 5), (6, 8)) == 0.0
    assert abs(spans.span_f1((3, 6), (5, 8)) - 0.5) < 1e-12  # 2 shared of 4 and 4
    result = spans.score({0: (3, 5), 1: (3, 6)}, {0: (3, 5), 1: (5, 8)})
    assert result == {"exact_match": 50.0, "f1": 75.0, "total": 2}


def test_spans_script_reads_bert_layout_logs(tmp_path):
    log = tmp_path / "log.json"
    log.write_text(json.dumps([{"qsl_idx": 0, "data": _logits(16, 4, 6).tobytes().hex()},
                               {"qsl_idx": 1, "data": _logits(16, 2, 2).tobytes().hex()}]))
    labels = tmp_path / "spans.txt"
    labels.write_text("a 4 6\nb 2 3\n")
    done = subprocess.run([sys.executable, str(SCRIPTS / "spans.py"), "--mlperf-accuracy-file", str(log),
                           "--spans-file", str(labels)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == '{"exact_match": 50.000, "f1": 83.333}'
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"qsl_idx": 0, "data": np.zeros(3, np.float32).tobytes().hex()}]))
    done = subprocess.run([sys.executable, str(SCRIPTS / "spans.py"), "--mlperf-accuracy-file", str(bad),
                           "--spans-file", str(labels)], capture_output=True, text=True)
    assert done.returncode == 2 and "(seq, 2)" in done.stderr and "Traceback" not in done.stderr
