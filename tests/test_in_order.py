"""Batches measured on several threads are absorbed in batch order; the first failure in that
order is the one raised, with exactly the batches before it absorbed."""

import time

import pytest

from mlperf_qx.quant.in_order import run_in_order


def _batches(count, unreadable=None):
    for i in range(count):
        if i == unreadable:
            raise OSError(f"cannot read b{i}")
        yield [f"b{i}"], {"i": i}


def _measure(fails=()):
    def measure(worker, ids, feeds):
        time.sleep(0.002 * ((feeds["i"] * 7) % 3))  # later batches often finish first
        if feeds["i"] in fails:
            raise ValueError(f"bad {ids[0]}")
        return feeds["i"], worker
    return measure


def test_every_batch_is_absorbed_once_in_order_on_the_thread_that_measured_it():
    absorbed = []
    run_in_order(_batches(30), 3, _measure(), lambda worker, ids, result: absorbed.append((ids[0], worker, result)))
    assert [ids for ids, _, _ in absorbed] == [f"b{i}" for i in range(30)]
    assert all(result == (int(ids[1:]), worker) for ids, worker, result in absorbed)


@pytest.mark.parametrize("where", ["measure", "absorb", "read"])
def test_the_first_failure_in_batch_order_is_raised_after_the_batches_before_it(where):
    absorbed = []

    def absorb(worker, ids, result):
        if where == "absorb" and result[0] in (9, 14):
            raise ValueError(f"bad {ids[0]}")
        absorbed.append(result[0])

    error = {"measure": ValueError, "absorb": ValueError, "read": OSError}[where]
    with pytest.raises(error, match="b9"):
        run_in_order(_batches(20, unreadable=9 if where == "read" else None), 3,
                     _measure(fails=(9, 14) if where == "measure" else ()), absorb)
    assert absorbed == list(range(9))
