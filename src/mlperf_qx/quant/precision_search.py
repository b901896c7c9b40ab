"""Per-op sensitivity and accuracy-aware precision, on the switchboard (one gated graph).

Sensitivity of an op: the output error against FP32 with only that op in int8 (what it costs),
and optionally with every op in int8 but it (what keeping it FP32 buys), on the first
QUICK_SAMPLES held-out samples (one trial per op: a BERT-base has 170). No recalibration: the
scales are the calibrated ones in every trial. The search's own trials use every held-out sample.

The search keeps the fewest ops in FP32 that reach the target on the held-out samples:
1. ops are ordered by measured cost per MatMul/Conv FLOP (ops without such work come first: an
   FP32 Add or Mul costs no int8 GEMM), most costly first;
2. a binary search finds the shortest prefix of that order that, kept in FP32, meets the target;
3. each FLOP-carrying op of the prefix, largest first, is tried back in int8 and stays there if
   the target still holds.
   The ops are given back in groups, halved where a group breaks the target (group testing): when
   most of a long prefix goes back, as on trained transformers whose prefix holds many cheap
   attention MatMuls, one trial that gives back a whole group replaces a trial per op.
Every trial is one run of the held-out batch; the number of trials and the time are reported.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial

from ..background import together
from ..progress import progress_bar
from ..runtime import usable_cores

from .switchboard import QUICK_SAMPLES, OutputError, Switchboard

BLOCK = 8  # ops measured int8 together in the first sensitivity pass
LUMP_SHARE = 0.02  # blocks left unopened cost together at most this share of all blocks' cost
GROUP_SHARE = 0.05  # in an opened block, a group costing at most this share of the block's cost stays whole


@dataclass(frozen=True)
class Target:
    cosine: float | None = None
    sqnr_db: float | None = None
    accuracy: float | None = None  # % of the FP32 top-1 on the held-out labels (MLPerf's 99 / 99.9)
    fp32_accuracy: float | None = None  # set once measured

    def met(self, error: OutputError) -> bool:
        accurate = self.accuracy is None or (error.accuracy is not None and self.fp32_accuracy is not None and
                                             error.accuracy >= self.accuracy / 100.0 * self.fp32_accuracy - 1e-9)
        return accurate and (self.cosine is None or error.mean_cosine >= self.cosine) and (
            self.sqnr_db is None or error.sqnr_db >= self.sqnr_db)

    def describe(self) -> str:
        parts = []
        if self.cosine is not None:
            parts.append(f"mean cosine >= {self.cosine:g}")
        if self.sqnr_db is not None:
            parts.append(f"SQNR >= {self.sqnr_db:g} dB")
        if self.accuracy is not None:
            fp32 = f" of FP32's {self.fp32_accuracy:.2f}%" if self.fp32_accuracy is not None else ""
            parts.append(f"top-1 >= {self.accuracy:g}%{fp32}")
        return " and ".join(parts)


@dataclass
class Sensitivity:
    unit: str
    op_type: str
    flops: float
    alone_int8: OutputError  # only this op in int8
    alone_fp32: OutputError | None = None  # every op in int8 but this one
    block: int = 1  # > 1: measured int8 together with this many ops (its group), its cost a share of theirs
    inferred: bool = False  # its group's cost is its block's less what the rest of the block measured

    @property
    def cost(self) -> float:
        return 1.0 - self.alone_int8.mean_cosine


@dataclass
class SearchResult:
    target: Target
    int8: set[str]
    fp32: dict[str, str]  # unit -> why it stays FP32
    start: OutputError
    final: OutputError
    trials: int
    seconds: float
    met: bool
    int8_flop_share: float
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The search's record, as ``--json`` and ``sensitivity.json`` give it."""
        return {"target": self.target.describe(), "met": self.met, "trials": self.trials, "seconds": self.seconds,
                "fp32_ops": self.fp32, "int8_matmul_conv_flop_share": self.int8_flop_share,
                "start_mean_cosine": self.start.mean_cosine, "final_mean_cosine": self.final.mean_cosine,
                "final_min_cosine": self.final.min_cosine, "final_sqnr_db": self.final.sqnr_db, "steps": self.steps}


def measure_sensitivity(board: Switchboard, op_types: dict[str, str], flops: dict[str, float],
                        leave_one_out: bool = False, show_progress: bool = True) -> list[Sensitivity]:
    """Every op's sensitivity, measured alone when ``leave_one_out`` (``--sensitivity``: every op both
    ways); else by blocks (``_blocked_sensitivity``), which orders the search as well for far fewer trials."""
    if not leave_one_out:
        return _blocked_sensitivity(board, op_types, flops, show_progress)
    everything = set(board.units)
    results = []
    with progress_bar(show_progress) as progress:
        task = progress.add_task("measuring per-op sensitivity", total=len(board.units) * 2)
        for unit in board.units:
            alone = board.quick.error({unit})
            without = board.quick.error(everything - {unit})
            progress.advance(task, 2)
            results.append(Sensitivity(unit, op_types.get(unit, "?"), flops.get(unit, 0.0), alone, without))
    return results


def _blocked_sensitivity(board: Switchboard, op_types: dict[str, str], flops: dict[str, float],
                         show_progress: bool) -> list[Sensitivity]:
    """Single-op sensitivity where it decides the search's order, group sensitivity elsewhere.

    Blocks of BLOCK consecutive ops (graph order) are measured int8 together first; then, costliest
    block first, blocks are opened until the blocks not yet opened cost together at most LUMP_SHARE
    of all blocks' cost. An opened block is halved (``_halve``) down to the ops that carry its cost,
    each measured alone. The ops of a group left whole (cheap: the error a transformer's int8 model
    has lies in a few residual Adds, FFN outputs and projections) share its figure, divided among
    them for the order; they end the search's order, where the binary search rarely reaches, and
    what is kept FP32 is measured whole by the search's own trials either way."""
    units = board.units
    blocks = [tuple(units[i:i + BLOCK]) for i in range(0, len(units), BLOCK)]
    with progress_bar(show_progress) as progress, _trials_at_once(board) as running:
        task = progress.add_task("measuring per-op sensitivity (by blocks, then halves of the costly ones)", total=None)

        def measure(group: tuple[str, ...]) -> _Group:
            with running:
                progress.advance(task)
                return _Group(board.quick_solo.error(set(group), solo=True), True)

        measured = together(*[partial(measure, block) for block in blocks])
        total = left = sum(g.cost for g in measured)
        groups, opened = [], []
        for index in sorted(range(len(blocks)), key=lambda i: (-measured[i].cost, i)):
            if left <= LUMP_SHARE * total or len(blocks[index]) == 1:  # a block of one op was measured alone
                groups.append((blocks[index], measured[index]))
                continue
            left -= measured[index].cost
            opened.append(index)
        # Which blocks open depends on the blocks' figures only: the halvings are independent.
        for halves in together(*[partial(_halve, blocks[i], measured[i], GROUP_SHARE * measured[i].cost, measure)
                                 for i in opened]):
            groups += halves
    return [Sensitivity(unit, op_types.get(unit, "?"), flops.get(unit, 0.0),
                        replace(g.error, mean_cosine=1.0 - g.cost / len(group)), block=len(group),
                        inferred=not g.measured)
            for group, g in sorted(groups, key=lambda item: units.index(item[0][0])) for unit in group]


@contextmanager
def _trials_at_once(board: Switchboard):
    """A semaphore letting one sensitivity trial per core run at once, each on the switchboard's
    one-thread sessions (built for the pass, dropped after it: see ``SegmentedGraph.solo``). Each
    halving runs on a thread of its own (``together``) and waits for its trials without holding a
    core's place (a pool of one worker per core left a core idle for 5 s on mpnet while the last
    block was halved); any trial ready runs. Solo trials start from the all-FP32 run and are not
    remembered, so the figures do not depend on the order they ran in."""
    board.graph.solo(True)
    try:
        yield threading.BoundedSemaphore(usable_cores())
    finally:
        board.graph.solo(False)


def _halve(group: tuple[str, ...], figure: _Group, floor: float, measure) -> list[tuple[tuple[str, ...], _Group]]:
    """``group`` split down to the ops that carry its cost: its first half is measured, the second
    half's cost is the group's less the first's (1 - cosine nearly adds for small errors); a half
    costing at most ``floor`` stays whole, and a single op whose cost was only inferred is measured
    alone. A block whose cost lies in one op (a transformer's residual Add) takes 3 or 4 trials
    instead of one per op, and that op's figure is its own measurement. Where both halves cost more
    than ``floor`` (the cost is spread), every op of the group is measured alone, as before halving:
    at most one trial more than that, never a figure inferred where it matters."""
    if figure.cost <= floor:
        return [(group, figure)]
    if len(group) == 1:
        return [(group, figure if figure.measured else measure(group))]
    first, second = group[:len(group) // 2], group[len(group) // 2:]
    head = measure(first)
    rest = _Group(replace(figure.error, mean_cosine=1.0 - max(figure.cost - head.cost, 0.0)), False)
    if head.cost > floor and rest.cost > floor:
        alone = together(*[(lambda: head) if first == (unit,) else partial(measure, (unit,)) for unit in group])
        return [((unit,), figure) for unit, figure in zip(group, alone)]
    first_halves, second_halves = together(partial(_halve, first, head, floor, measure),
                                           partial(_halve, second, rest, floor, measure))
    return first_halves + second_halves


@dataclass
class _Group:
    error: OutputError  # measured with the group in int8, or (not ``measured``) its cost inferred
    measured: bool

    @property
    def cost(self) -> float:
        return max(1.0 - self.error.mean_cosine, 0.0)


def int8_flop_share(int8: set[str], flops: dict[str, float]) -> float:
    total = sum(flops.values())
    return sum(f for unit, f in flops.items() if unit in int8) / total if total else 1.0


def search(board: Switchboard, sensitivities: list[Sensitivity], target: Target, flops: dict[str, float],
           show_progress: bool = True) -> SearchResult:
    started = time.perf_counter()
    everything = set(board.units)
    trials = 0

    def evaluate(int8: set[str]) -> OutputError:
        nonlocal trials
        trials += 1
        return board.error(int8)

    total_flops = sum(flops.values()) or 1.0
    order = sorted(sensitivities, key=lambda s: -s.cost / (s.flops / total_flops + 1e-4))
    if target.accuracy is not None:
        target = replace(target, fp32_accuracy=board.error(set()).accuracy)
    start = evaluate(everything)
    steps = [f"all {len(everything)} ops int8: mean cosine {start.mean_cosine:.5f}, SQNR {start.sqnr_db:.1f} dB"]
    if target.met(start):
        return SearchResult(target, everything, {}, start, start, trials, time.perf_counter() - started, True,
                            int8_flop_share(everything, flops), steps)
    with progress_bar(show_progress) as progress:
        task = progress.add_task(f"searching for {target.describe()}", total=None)
        full = evaluate(set())
        if not target.met(full):
            return SearchResult(target, set(), {s.unit: "the target is not met even in FP32" for s in order}, start, full,
                                trials, time.perf_counter() - started, False, 0.0, steps)

        def kept_fp32(length: int, on_all: bool = True) -> OutputError:
            """The error with the ``length`` first ops of the order FP32, on all samples or the quick ones."""
            progress.advance(task)
            int8 = everything - {s.unit for s in order[:length]}
            return evaluate(int8) if on_all else board.quick.error(int8)

        guess = None
        if board.quick is not board:  # the binary search on the quick samples first: its answer, a guess
            guess, _ = _shortest_prefix(lambda n: kept_fp32(n, on_all=False), target.met, 0, len(order))
        high, best = _shortest_prefix(kept_fp32, target.met, 0, len(order), guess)
        if guess is not None:
            steps.append(f"binary search on the first {QUICK_SAMPLES} held-out samples: the {guess} costliest ops "
                         f"(per FLOP) in FP32; checked from there on all {board.sample_count} held-out samples")
        kept = [s for s in order[:high]]
        best = best or evaluate(everything - {s.unit for s in kept})
        steps.append(f"binary search: the {len(kept)} costliest ops (per FLOP) in FP32 reach mean cosine "
                     f"{best.mean_cosine:.5f}")
        best = _give_back(kept, everything, target, evaluate, steps, lambda: progress.advance(task)) or best
    int8 = everything - {s.unit for s in kept}
    reasons = {s.unit: f"kept FP32 for {target.describe()} on held-out samples: {_cost_text(s)}, "
                       f"{100 * s.flops / total_flops:.2f}% of MatMul/Conv FLOPs" for s in kept}
    return SearchResult(target, int8, reasons, start, best, trials, time.perf_counter() - started, True,
                        int8_flop_share(int8, flops), steps)


def _shortest_prefix(error_at, met, low: int, high: int, guess: int | None = None) -> tuple[int, OutputError | None]:
    """Step 2: the shortest prefix length in [low, high] whose error meets the target (``high``
    meets: not measured), with the error measured at it (None if ``high``). From ``guess``, when
    given: galloping down from it while shorter prefixes meet, or up while longer ones do not, then
    a binary search in what is left; a right guess costs two trials (it, and one op fewer)."""
    best = None
    if guess is not None and low <= guess < high:
        error, step = error_at(guess), 1
        if met(error):
            high, best = guess, error
            while high - step >= low:
                error = error_at(high - step)
                if not met(error):
                    low = high - step + 1
                    break
                high, best, step = high - step, error, step * 2
        else:
            low = guess + 1
            while guess + step < high:
                error = error_at(guess + step)
                if met(error):
                    high, best = guess + step, error
                    break
                low, step = guess + step + 1, step * 2
    while low < high:
        middle = (low + high) // 2
        error = error_at(middle)
        if met(error):
            high, best = middle, error
        else:
            low = middle + 1
    return high, best


def _give_back(kept: list[Sensitivity], everything: set[str], target: Target, evaluate, steps: list[str],
               advance) -> OutputError | None:
    """Step 3 of the search: the FLOP-carrying ops of ``kept`` back to int8 where the target still
    holds, largest first. A group goes back whole when the target holds with it in int8; else it is
    halved and each half tried (its first half first, so a half that goes back is in every later
    trial). Returns the error of the last set that met the target, None if nothing went back."""
    best = None

    def try_group(group: list[Sensitivity]) -> None:
        nonlocal best
        back = {s.unit for s in group}
        error = evaluate(everything - {s.unit for s in kept if s.unit not in back})
        advance()
        if target.met(error):
            kept[:] = [s for s in kept if s.unit not in back]
            best = error
            names = group[0].unit if len(group) == 1 else f"{len(group)} ops ({group[0].unit} … {group[-1].unit})"
            steps.append(f"{names} back to int8: mean cosine {error.mean_cosine:.5f}")
        elif len(group) > 1:
            middle = len(group) // 2
            try_group(group[:middle])
            try_group(group[middle:])

    candidates = sorted((s for s in kept if s.flops > 0), key=lambda s: -s.flops)
    if candidates:
        try_group(candidates)
    return best


def _cost_text(s: Sensitivity) -> str:
    if s.inferred:
        return (f"its group of {s.block} op(s) costs {s.block * s.cost:.2e} cosine (its block's cost less the measured "
                "rest of the block)")
    if s.block == 1:
        return f"alone in int8 it costs {s.cost:.2e} cosine ({s.alone_int8.sqnr_db:.1f} dB output SQNR)"
    return (f"its block of {s.block} ops in int8 costs {s.block * s.cost:.2e} cosine ({s.alone_int8.sqnr_db:.1f} dB "
            "output SQNR)")
