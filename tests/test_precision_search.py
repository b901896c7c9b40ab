"""The switchboard (one gated graph, any set of ops int8 or FP32), per-op sensitivity, and the
accuracy-aware precision search (--target-cosine / --target-sqnr) on held-out calibration ids."""

import json
import threading

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from conftest import assert_user_error
from mlperf_qx.quant.annotate import plan_quantization
from mlperf_qx.quant.calibrate import observe
from mlperf_qx.quant.spec import Method
from mlperf_qx.quant.switchboard import Switchboard
from mlperf_qx.quant.calibrated_ranges import ranges_from_observers
from mlperf_qx.quant.scales import group_scales
from mlperf_qx.quantize import QuantizeOptions, load_fp32_model
from transformer_fixtures import export_outlier_encoder, mean_cosine


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return export_outlier_encoder(tmp_path_factory.mktemp("search"))


def _planned(model):
    """(the FP32 proto, its plan, the calibrated scales) of ``model``."""
    from mlperf_qx.calibration.model_inputs import model_inputs
    from mlperf_qx.calibration.readers import open_calibration_set

    fp32 = load_fp32_model(model.fp32)
    calib = open_calibration_set(model.calib, model_inputs(fp32), model.calib_list)
    plan = plan_quantization(fp32, set())
    observation = observe(fp32, plan.observed_tensors(), calib, Method.MINMAX, None, False)
    ranges = ranges_from_observers(observation.observers, QuantizeOptions(calib=model.calib), len(calib))
    return ir.serde.serialize_model(fp32), plan, group_scales(plan, ranges)


def _board(model, segments=None):
    return Switchboard(*_planned(model), model.held_out, segments=segments)


def test_switchboard_is_fp32_with_gates_off_and_the_int8_model_with_gates_on(encoder, tmp_path, qx):
    board = _board(encoder)
    from mlperf_qx.runtime import open_session

    session = open_session(encoder.fp32)
    fp32 = np.concatenate([session.run(None, feed)[0] for feed in encoder.held_out])
    # Batched (the held-out windows run as one batch) against one by one: float rounding only.
    np.testing.assert_allclose(np.concatenate([o[0] for o in board.outputs(set())]), fp32, rtol=1e-5, atol=1e-5)
    int8_path = tmp_path / "int8.onnx"
    assert qx("quantize", encoder.fp32, "--calib", encoder.calib, "--calib-list", encoder.calib_list,
              "-o", int8_path).code == 0
    int8 = open_session(int8_path)
    real = np.concatenate([int8.run(None, feed)[0] for feed in encoder.held_out])
    simulated = np.concatenate([o[0] for o in board.outputs(set(board.units))])
    cosine = float(real.ravel() @ simulated.ravel() / (np.linalg.norm(real) * np.linalg.norm(simulated)))
    assert cosine > 0.9999, cosine
    error = board.error(set(board.units))
    assert error.mean_cosine < 1.0 and error.min_cosine <= error.mean_cosine


def test_segments_and_runs_from_a_cut_give_the_whole_graph_s_numbers_bit_for_bit(encoder):
    """The gated graph cut into segments computes what one session of it computes, and a trial
    started at the segment of its first int8 op (the values before it from the all-FP32 run) too."""
    from mlperf_qx.quant.switchboard import _gated_model, _units
    from mlperf_qx.runtime import open_session

    fp32, plan, scales = _planned(encoder)
    board = Switchboard(fp32, plan, scales, encoder.held_out, segments=4)
    assert len(board.graph.segments) == 4, [s.first_node for s in board.graph.segments]
    proto, initializers, _ = _gated_model(fp32, plan, scales, _units(fp32, plan))
    proto.graph.initializer.extend(initializers.values())
    whole = open_session(proto)
    rng = np.random.default_rng(0)
    trials = [set(board.units), *({u} for u in board.units), *(set(rng.choice(board.units, 3)) for _ in range(4))]
    starts = set()
    for int8 in trials:
        for samples in (board.samples, board.quick.samples):
            expected = [whole.run(board.output_names, {**feed, **board.gates(int8)}) for feed in samples.feeds]
            got = board.outputs(int8, samples)
            assert all(np.array_equal(a, b) for e, g in zip(expected, got) for a, b in zip(e, g)), int8
        starts.add(board.graph.segment_of(min(board._first_node[u] for u in int8)))
    assert len(starts) == 4  # every segment starts some trial
    fp32_outputs = [whole.run(board.output_names, {**feed, **board.gates(set())}) for feed in board.samples.feeds]
    assert all(np.array_equal(a, b) for e, g in zip(fp32_outputs, board.reference) for a, b in zip(e, g))


def test_trials_at_once_on_one_thread_give_the_numbers_of_trials_one_by_one_on_two(encoder):
    """The sensitivity pass runs its trials two at a time on one-thread sessions: the same outputs,
    bit for bit, as the two-thread sessions give, and the same figures as trials run one by one."""
    from mlperf_qx.quant.precision_search import measure_sensitivity

    fp32, plan, scales = _planned(encoder)
    board = Switchboard(fp32, plan, scales, encoder.held_out, segments=4, side_by_side=False)  # two-thread sessions
    board.graph.solo(True)
    rng = np.random.default_rng(0)
    trials = [set(), set(board.units), *(set(rng.choice(board.units, 5)) for _ in range(3))]
    for int8 in trials:
        feed = {**board.samples.feeds[0], **board.gates(int8)}
        alone, together = board.graph.run(feed, solo=True)[0], board.graph.run(feed)[0]
        assert all(np.array_equal(a, b) for a, b in zip(alone, together)), int8
    board.graph.solo(False)
    # Batches side by side, each on one thread (more held-out samples than the quick ones): the
    # same outputs as one batch after the other on two threads.
    beside = Switchboard(fp32, plan, scales, encoder.held_out, segments=4, side_by_side=True)
    assert len(beside.samples.feeds) > 1 and beside.graph.one_thread
    for int8 in trials:
        assert all(np.array_equal(a, b) for e, g in zip(board.outputs(int8), beside.outputs(int8)) for a, b in zip(e, g))
    # The sensitivity pass's own quick set: the quick samples in one batch, the same figures.
    assert len(beside.quick_solo.samples.feeds) == 1 < len(beside.quick.samples.feeds)
    for int8 in trials:
        assert beside.quick_solo.error(int8, solo=True) == beside.quick.error(int8), int8
    remembered = [list(runs) for runs in board.samples.runs]
    measured = measure_sensitivity(board, {}, {}, show_progress=False)
    # Trials at once start from the all-FP32 run only and are not remembered: no trial's values
    # depend on which ran beside or before it.
    assert [list(runs) for runs in board.samples.runs] == remembered
    fresh = Switchboard(fp32, plan, scales, encoder.held_out, segments=4)
    singles = [s for s in measured if s.block == 1 and not s.inferred]
    assert singles
    for s in singles:
        assert fresh.quick.error({s.unit}) == s.alone_int8, s.unit
    assert all(segment.solo is None for segment in board.graph.segments)  # dropped after the pass


def test_a_unit_s_switches_sit_just_before_it_and_a_trial_resumes_from_the_closest_remembered_run(encoder):
    """Each unit's fake-quantization and switch nodes come right before the unit (not where their
    operand is made: an attention mask made at the input would start every trial at the first
    segment); a trial starts after the last gate it shares with a remembered run, a trial already
    run is not run again (the quick samples are the first batch of all: a trial on them is half of
    one on all), and the numbers are those of a switchboard with no history, bit for bit."""
    from mlperf_qx.quant.switchboard import _gated_model

    fp32, plan, scales = _planned(encoder)
    board = Switchboard(fp32, plan, scales, encoder.held_out, segments=4)
    proto, _, _ = _gated_model(fp32, plan, scales, board.units)
    names = [n.name for n in proto.graph.node]
    for unit in board.units:
        between = names[board._first_node[unit]:names.index(unit)]
        assert all(name.startswith(("qx_switch/", "qx_fq/")) for name in between), (unit, between)
    starts = []
    run = board.graph.run

    def spied(feed, start=0, cached=None, solo=False):
        starts.append(start)
        return run(feed, start, cached, solo)

    board.graph.run = spied
    segment = {u: board.graph.segment_of(board._first_node[u]) for u in board.units}
    last, everything = board.units[-1], set(board.units)
    trials = [{last}, {last}, everything, everything - {last}]
    got = [board.outputs(int8) for int8 in trials]
    batches = len(board.samples.feeds)
    assert starts == [segment[last]] * batches + [0] * batches + [segment[last]] * batches  # the repeat: no run
    assert len(board.samples.feeds) == 8  # 16 windows batched by 2: the quick ones first
    starts.clear()
    quick, whole = board.quick.error({board.units[0]}), board.error({board.units[0]})
    assert len(starts) == batches and whole.min_cosine <= quick.min_cosine  # the quick batch ran once
    fresh = Switchboard(fp32, plan, scales, encoder.held_out, segments=4)
    for int8, outputs in zip(trials, got):
        expected = fresh.outputs(int8)
        assert all(np.array_equal(a, b) for e, g in zip(expected, outputs) for a, b in zip(e, g)), int8


def test_target_cosine_keeps_the_costliest_ops_fp32_and_reports_why(encoder, tmp_path, qx):
    out, report = tmp_path / "searched.onnx", tmp_path / "report"
    result = qx("quantize", encoder.fp32, "--calib", encoder.calib, "--calib-list", encoder.calib_list,
                "--target-cosine", "0.9995", "--sensitivity", "--holdout", "8", "--report", report, "--explain",
                "-o", out)
    assert result.code == 0, result.err
    assert "target mean cosine >= 0.9995: met by the written model on 8 held-out samples" in result.out
    assert "8 held-out samples only: the lower bound is wide" in result.err  # 8 is below the default
    assert "MatMul/Conv FLOPs in int8" in result.out
    payload = json.loads((report / "sensitivity.json").read_text())
    search = payload["search"]
    assert search["met"] and search["final_mean_cosine"] >= 0.9995
    assert 0.0 < search["int8_matmul_conv_flop_share"] <= 1.0
    assert all("only_fp32_cosine" in row and "precision" in row for row in payload["ops"])
    assert (report / "sensitivity.png").stat().st_size > 0 and "| op | type |" in (report / "sensitivity.md").read_text()
    info = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["qx.quantization"])
    assert info["held_out_for_precision_search"] == 8 and info["calibration_samples"] == 48
    for op in search["fp32_ops"]:
        assert info["fp32_nodes"][op].startswith("kept FP32 for mean cosine >= 0.9995"), info["fp32_nodes"][op]
    plain = tmp_path / "plain.onnx"
    assert qx("quantize", encoder.fp32, "--calib", encoder.calib, "--calib-list", encoder.calib_list,
              "-o", plain).code == 0
    assert mean_cosine(encoder.fp32, out, encoder.held_out)[0] >= mean_cosine(encoder.fp32, plain, encoder.held_out)[0]


def test_target_sqnr_and_holdout_errors(encoder, tmp_path, qx):
    out = tmp_path / "s.onnx"
    result = qx("quantize", encoder.fp32, "--calib", encoder.calib, "--calib-list", encoder.calib_list,
                "--target-sqnr", "30", "-o", out, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    search = summary["precision_search"]
    assert search["met"] and search["target"] == "SQNR >= 30 dB"
    # Where the time went, by phase: the search is inside its phase, every phase was timed.
    timings = summary["timings_s"]
    assert list(timings) == ["loading", "calibration", "sensitivity and precision search", "writing and checking"]
    assert timings["sensitivity and precision search"] >= search["seconds"] > 0
    assert_user_error(qx("quantize", encoder.fp32, "--calib", encoder.calib, "--target-cosine", "0.99",
                         "--holdout", "45", "-o", tmp_path / "x.onnx"), "--holdout 45")
    assert_user_error(qx("quantize", encoder.fp32, "--calib", encoder.calib, "--target-cosine", "1.5",
                         "-o", tmp_path / "x.onnx"), "--target-cosine 1.5")
    assert not (tmp_path / "x.onnx").exists()


def test_target_accuracy_on_held_out_labels_of_the_calibration_list(digits, tmp_path, qx):
    from conftest import CALIB_LIST

    out = tmp_path / "acc.onnx"
    labels = digits["data"] / "calibration_candidates_map.txt"
    result = qx("quantize", digits["fp32"], "--calib", digits["data"] / "calibration_candidates", "--calib-list",
                CALIB_LIST, "--target-accuracy", "99.9", "--labels", labels, "--holdout", "40", "-o", out, "--json")
    assert result.code == 0, result.err
    search = json.loads(result.out)["precision_search"]
    assert search["met"] and "top-1 >= 99.9% of FP32's" in search["target"], search
    assert_user_error(qx("quantize", digits["fp32"], "--calib", digits["data"] / "calibration_candidates",
                         "--calib-list", CALIB_LIST, "--target-accuracy", "99", "-o", tmp_path / "x.onnx"),
                      "--target-accuracy needs --labels")


def _held_out_feeds(model, count: int) -> list[dict]:
    from mlperf_qx.calibration.model_inputs import model_inputs
    from mlperf_qx.calibration.readers import open_calibration_set

    calib = open_calibration_set(model.calib, model_inputs(load_fp32_model(model.fp32)), model.calib_list)
    return [calib.sample(i) for i in calib.ids[-count:]]


@pytest.mark.parametrize("flags", [("--target-cosine", "0.9995"), ("--target-sqnr", "30")])
def test_every_figure_printed_as_met_holds_on_the_written_file(encoder, tmp_path, qx, flags):
    """What quantize prints about a met target is re-measured here, independently, on the written
    file and the held-out ids (the default count: the last 24 of 48), and holds."""
    out = tmp_path / "claimed.onnx"
    result = qx("quantize", encoder.fp32, "--calib", encoder.calib, "--calib-list", encoder.calib_list, *flags,
                "-o", out, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    claim = summary["target"]
    assert claim["met"] and claim["samples"] == 24, claim
    # Each phase's time also in FP32 passes over the list, from the FP32 model's held-out runs.
    assert summary["fp32_pass_s"] > 0 and "fp32_seconds_per_sample" not in claim
    passes = summary["timings_fp32_passes"]
    assert passes.keys() == {*summary["timings_s"], "total"}
    assert np.isclose(passes["total"] * summary["fp32_pass_s"], sum(summary["timings_s"].values()))
    from mlperf_qx.runtime import open_session

    feeds = _held_out_feeds(encoder, claim["samples"])
    fp32, int8 = open_session(encoder.fp32), open_session(out)
    a = np.stack([np.concatenate([o.ravel() for o in fp32.run(None, f)]) for f in feeds]).astype(np.float64)
    b = np.stack([np.concatenate([o.ravel() for o in int8.run(None, f)]) for f in feeds]).astype(np.float64)
    cosines = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    sqnr = 10 * np.log10(np.sum(a * a) / np.sum((a - b) ** 2))
    assert abs(cosines.mean() - claim["mean_cosine"]) < 1e-6 and abs(sqnr - claim["sqnr_db"]) < 1e-3
    assert claim["cosine_lower"] <= cosines.mean() and claim["sqnr_lower_db"] <= sqnr
    if flags[0] == "--target-cosine":
        assert cosines.mean() >= float(flags[1])
    else:
        assert sqnr >= float(flags[1])


def _shape_op_model(folder):
    """Reshape -> Transpose -> Reshape -> MatMul on heavy-tailed inputs: the Q/DQ in front of the
    shape ops rounds the many small values away (magika's Reshape/Transpose/Squeeze/GlobalMaxPool)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Reshape", ["x", "to3d"], ["r"], name="reshape"),
             helper.make_node("Transpose", ["r"], ["t"], name="transpose", perm=[0, 2, 1]),
             helper.make_node("Reshape", ["t", "to2d"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "w"], ["out"], name="matmul")]
    inits = [numpy_helper.from_array(np.array([1, 16, 16], np.int64), "to3d"),
             numpy_helper.from_array(np.array([1, 256], np.int64), "to2d"),
             numpy_helper.from_array((rng.standard_normal((256, 32)) / 16).astype(np.float32), "w")]
    graph = helper.make_graph(nodes, "shapes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "fp32.onnx")
    (folder / "calib").mkdir()
    for i in range(40):
        np.save(folder / "calib" / f"s{i:03d}.npy", rng.standard_t(2.0, (1, 256)).astype(np.float32))
    (folder / "calib" / "list.txt").write_text("".join(f"s{i:03d}\n" for i in range(40)))
    return folder / "fp32.onnx"


def test_shape_op_qdq_is_measured_and_the_claim_holds_on_the_written_file(tmp_path, qx):
    """Every op here reads the one rounded input, so the search keeps all of them int8 or all FP32:
    0.997 is met all int8 (measured 0.9976 on the written file); 0.9999 only with no int8 op at all,
    a file quantize refuses to write (exit 1, the all-int8 figures named)."""
    fp32 = _shape_op_model(tmp_path)
    out, report = tmp_path / "int8.onnx", tmp_path / "report"
    args = ("quantize", fp32, "--calib", tmp_path / "calib", "--calib-list", tmp_path / "calib" / "list.txt")
    refused = qx(*args, "--target-cosine", "0.9999", "-o", out)
    assert refused.code == 1 and "kept all 4 ops FP32 (all int8 it measured mean cosine 0.99" in refused.err, refused
    assert not out.exists()
    result = qx(*args, "--target-cosine", "0.997", "--sensitivity", "--report", report, "-o", out, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    measured = {row["op"] for row in json.loads((report / "sensitivity.json").read_text())["ops"]}
    assert {"reshape", "transpose", "flatten", "matmul"} <= measured, measured  # every Q/DQ has a gate
    claim = summary["target"]
    assert claim["samples"] == 20
    from mlperf_qx.runtime import open_session

    ids = (tmp_path / "calib" / "list.txt").read_text().split()[-20:]
    feeds = [{"x": np.load(tmp_path / "calib" / f"{i}.npy")} for i in ids]
    a = np.stack([open_session(fp32).run(None, f)[0].ravel() for f in feeds]).astype(np.float64)
    b = np.stack([open_session(out).run(None, f)[0].ravel() for f in feeds]).astype(np.float64)
    cosine = float(np.mean(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
    assert abs(cosine - claim["mean_cosine"]) < 1e-6
    assert claim["met"] == (cosine >= 0.997), (claim, cosine)
    if not claim["met"]:
        assert "does not meet" in result.err


def test_give_back_in_groups_keeps_exactly_the_ops_the_target_needs_in_fewer_trials():
    """The search's last step, on an additive error model (each op's int8 error adds to 1 - cosine):
    of 32 FLOP-carrying ops kept FP32 by the binary search, the 2 costly ones must stay; groups that
    go back whole take far fewer trials than one per op, and the result is what one per op gives."""
    from mlperf_qx.quant.precision_search import Sensitivity, Target, _give_back
    from mlperf_qx.quant.switchboard import OutputError

    costs = {f"op{i}": 1e-5 for i in range(32)} | {"op5": 0.004, "op20": 0.003}
    everything = set(costs) | {"free"}
    trials = []

    def evaluate(int8: set[str]) -> OutputError:
        trials.append(int8)
        cosine = 1.0 - sum(costs.get(u, 0.0) for u in int8)
        return OutputError(cosine, cosine, 40.0)

    def sensitivity(unit):
        return Sensitivity(unit, "MatMul", 1000.0 - int(unit[2:]), OutputError(1 - costs[unit], 1 - costs[unit], 40.0))

    kept = [sensitivity(u) for u in sorted(costs, key=lambda u: int(u[2:]))]
    steps: list[str] = []
    best = _give_back(kept, everything, Target(cosine=0.9965), evaluate, steps, lambda: None)
    assert [s.unit for s in kept] == ["op5"]  # op20 fits in the budget once the rest is back, op5 does not
    assert best is not None and best.mean_cosine >= 0.9965
    assert len(trials) < 16, len(trials)


def test_an_opened_block_is_halved_down_to_the_ops_that_carry_its_cost():
    """On an additive error model: a block of 8 whose cost lies in one op takes 3 or 4 trials (not 8)
    and that op's figure is its own measurement, the cheap rest sharing group figures flagged as
    such; a block whose cost is spread over both halves is measured op by op (one trial more)."""
    from mlperf_qx.quant.precision_search import GROUP_SHARE, _Group, _halve
    from mlperf_qx.quant.switchboard import OutputError

    def run(costs: dict[str, float]):
        trials = []

        def measure(group):
            trials.append(group)
            cosine = 1.0 - sum(costs[u] for u in group)
            return _Group(OutputError(cosine, cosine, 30.0), True)

        block = tuple(costs)
        figure = measure(block)
        groups = _halve(block, figure, GROUP_SHARE * figure.cost, measure)
        assert [u for group, _ in groups for u in group] == list(block)
        return {group: g for group, g in groups}, len(trials) - 1

    cheap = {f"op{i}": 1e-6 for i in range(8)}
    for dominant in ("op0", "op5", "op7"):
        groups, trials = run(cheap | {dominant: 0.04})
        assert groups[(dominant,)].measured and groups[(dominant,)].cost == pytest.approx(0.04)
        assert trials <= 4, trials
        assert all(not g.measured or len(group) == 1 or g.cost <= GROUP_SHARE * 0.04 for group, g in groups.items())
    groups, trials = run(cheap | {"op1": 0.01, "op6": 0.03})
    assert all(len(group) == 1 and g.measured for group, g in groups.items()) and trials == 9
    groups, trials = run(cheap | {"op1": 0.01, "op2": 0.03})  # both in the first half: halved further
    assert groups[("op1",)].measured and groups[("op2",)].measured and trials < 8


def test_shortest_prefix_from_a_guess_finds_what_the_binary_search_finds_and_a_right_guess_costs_two_trials():
    """Step 2 of the search, on a monotone target (prefixes of ``answer`` ops or more meet): from
    any guess, too low, too high or right, the same prefix as the plain binary search; a right guess
    in two trials, a guess one off in at most four."""
    from mlperf_qx.quant.precision_search import _shortest_prefix
    from mlperf_qx.quant.switchboard import OutputError

    for answer in (0, 1, 6, 40, 140):
        def error_at(length, calls):
            calls.append(length)
            cosine = 1.0 if length >= answer else 0.5
            return OutputError(cosine, cosine, 0.0)

        def met(error):
            return error.mean_cosine >= 0.99

        plain = []
        expected, _ = _shortest_prefix(lambda n: error_at(n, plain), met, 0, 141)
        assert expected == answer
        for guess in sorted({0, max(answer - 1, 0), answer, answer + 1, answer + 17, 140}):
            calls = []
            found, best = _shortest_prefix(lambda n: error_at(n, calls), met, 0, 141, guess)
            assert found == answer and (best is None or met(best)), (answer, guess, calls)
            if guess == answer and 0 < answer < 141:
                assert calls == [answer, answer - 1]
            if abs(guess - answer) == 1 and 0 < answer < 140:
                assert len(calls) <= 4, (answer, guess, calls)


def test_the_quick_samples_are_the_first_few_whether_or_not_the_held_out_ones_ran_batched():
    """Unbatched (one feed per sample), the quick set is the first QUICK_SAMPLES feeds, all of them
    when there are fewer; batched, it is the first batch (which holds exactly those samples)."""
    from mlperf_qx.quant.switchboard import BATCH_SAMPLES, QUICK_SAMPLES, _Samples

    def samples(count: int, batched: bool) -> _Samples:
        held_out = object.__new__(_Samples)
        held_out.batched, held_out.lock = batched, threading.Lock()
        held_out.feeds = [{"x": np.full((1,), k)} for k in range(count)]
        held_out.reference = [[np.full((1,), -k)] for k in range(count)]
        held_out.runs = [[f"run {k}"] for k in range(count)]
        return held_out

    for count in (1, QUICK_SAMPLES - 1, QUICK_SAMPLES, QUICK_SAMPLES + 5):
        quick = samples(count, batched=False).first(QUICK_SAMPLES)
        assert [int(f["x"][0]) for f in quick.feeds] == list(range(min(count, QUICK_SAMPLES))), count
        assert quick.runs == [[f"run {k}"] for k in range(min(count, QUICK_SAMPLES))] and not quick.batched
    for count in (1, 2, 3):  # a batched set: its first batches, the quick samples, and possibly the rest
        quick = samples(count, batched=True).first(QUICK_SAMPLES)
        batches = min(count, QUICK_SAMPLES // BATCH_SAMPLES)
        assert len(quick.feeds) == len(quick.reference) == len(quick.runs) == batches and quick.batched


def test_the_encoder_s_flops_come_from_its_declared_shapes_as_a_run_gives_them(encoder):
    from mlperf_qx.quant.flops import declared_shapes, matmul_flops, shapes_by_run

    fp32 = ir.serde.serialize_model(load_fp32_model(encoder.fp32))  # canonical: shapes inferred
    feed = encoder.held_out[0]
    names = sorted({v for n in fp32.graph.node if n.op_type == "MatMul" for v in (n.input[0], n.output[0])})
    declared = declared_shapes(fp32.graph, feed, names)
    assert declared is not None and declared == shapes_by_run(fp32, feed, names)
    assert sum(matmul_flops(fp32, feed).values()) > 0
