"""Observers stream: their state does not grow with the data, and batching does not change it."""

import copy

import numpy as np
import onnx
import onnx_ir as ir
from hypothesis import given, settings
from hypothesis import strategies as st

from mlperf_qx.quant.observers import HistogramObserver, MinMaxObserver, make_observer, threshold
from mlperf_qx.quant.spec import Method


def _state_bytes(observer):
    return sum(v.nbytes for v in vars(observer).values() if isinstance(v, np.ndarray))


def test_histogram_state_is_constant_in_the_number_of_samples():
    observer = HistogramObserver()
    rng = np.random.default_rng(0)
    observer.update(rng.standard_normal(1000).astype(np.float32))
    size = _state_bytes(observer)
    for scale in (1, 2, 10, 100):
        observer.update((rng.standard_normal(50_000) * scale).astype(np.float32))
    assert _state_bytes(observer) == size
    assert observer.count == 1000 + 4 * 50_000
    assert observer.hist.sum() == observer.count


def test_range_growth_keeps_every_count_and_covers_the_maximum():
    observer = HistogramObserver(bins=256)
    observer.update(np.linspace(-1, 1, 1001, dtype=np.float32))
    observer.update(np.array([37.5], np.float32))
    assert observer.hist.sum() == 1002
    assert observer.width * observer.hist.size > 37.5


def test_thresholds_never_exceed_the_observed_maximum():
    rng = np.random.default_rng(3)
    data = rng.standard_normal(100_000).astype(np.float32)
    for method in Method:
        observer = HistogramObserver() if method.needs_histogram else MinMaxObserver()
        observer.update(data)
        t = threshold(observer, method, 99.9)
        assert 0 < t <= np.abs(data).max()
    minmax = MinMaxObserver()
    minmax.update(data)
    assert threshold(minmax, Method.MINMAX, 99.9) == np.abs(data).max()


def _tiny_calibration(tmp_path, samples: int, seed: int):
    """The tiny Conv+Relu model with a symbolic batch, and ``samples`` samples of growing scale."""
    import onnx_ir as ir

    from mlperf_qx.calibration.model_inputs import model_inputs
    from mlperf_qx.calibration.readers import open_calibration_set
    from test_quantize_errors import _sample_folder, _tiny_model

    model = ir.load(str(_tiny_model(tmp_path / "tiny.onnx", shape=("n", 3, 4, 4))))
    folder = _sample_folder(tmp_path / "calib", samples, seed, growing=True)
    return model, open_calibration_set(folder, model_inputs(model), None, None, None)


def test_bound_arena_and_plain_runs_observe_the_same(tmp_path, monkeypatch):
    """onnxruntime writing into the bound arena (with a partial last batch) gives exactly the
    observers that per-tensor session.run outputs give."""
    from mlperf_qx.quant import calibrate

    model, calib = _tiny_calibration(tmp_path, samples=7, seed=4)
    tensors = ["x", "c", "y"]
    results, bound_runs = [], []
    real_run = calibrate.OutputArena.run
    monkeypatch.setattr(calibrate.OutputArena, "run", lambda self, feeds: bound_runs.append(1) or real_run(self, feeds))
    for arena in (True, False):
        monkeypatch.setattr(calibrate.OutputArena, "usable", staticmethod(lambda probe, batch, ok=arena: ok))
        seen = calibrate.observe(model, tensors, calib, Method.ENTROPY, batch=3, show_progress=False, keep_outputs=5)
        assert len(bound_runs) == 3  # the first pass ran its three batches bound; the second ran none
        assert seen.batch == 3 and seen.reference_outputs["y"].shape == (5, 2, 4, 4)
        results.append(seen)
    for name in tensors:
        a, b = results[0].observers[name], results[1].observers[name]
        np.testing.assert_array_equal(a.hist, b.hist)
        assert (a.amax, a.width, a.count) == (b.amax, b.width, b.count)
    np.testing.assert_array_equal(results[0].reference_outputs["y"], results[1].reference_outputs["y"])


def test_spare_arenas_are_written_by_their_own_runs_only(tmp_path):
    """The other workers' arenas (``_spare_arenas``, prefaulted before the pass) have the first
    arena's layout but buffers and bindings of their own: a run into one leaves the others as
    they were, and each holds what session.run gives for its own batch."""
    from mlperf_qx.quant import calibrate

    model, calib = _tiny_calibration(tmp_path, samples=4, seed=5)
    fetched = ["x", "c", "y"]
    session, batch, probe_feeds, probe = calibrate._calibration_session(model, fetched, calib, 1)
    first = calibrate.OutputArena(session, fetched, probe_feeds, probe, batch)
    spares = calibrate._spare_arenas(first, 2)
    assert len(spares) == 2 and calibrate._spare_arenas(None, 2) == []
    arenas = [first, *spares]
    assert len({a.data.ctypes.data for a in arenas}) == 3 and all(a.data.size == first.data.size for a in arenas)
    feeds = [calib.sample(i) for i in calib.ids[1:4]]
    for arena, feed in zip(arenas, feeds):
        arena.run(feed)
    for arena, feed in zip(arenas, feeds):
        for index, want in enumerate(session.run(fetched, feed)):
            np.testing.assert_array_equal(arena.segment(index, 1), want)


def test_the_arena_buffer_made_before_the_probe_is_sized_from_the_declared_shapes(tmp_path, monkeypatch):
    """The arena's buffer is made (and written once) while the session is built, sized from the
    declared shapes: the pass uses it when the probe confirms that size, and the observers end as
    with a buffer made after the probe. A wrong guess costs the buffer, never the result."""
    from mlperf_qx.quant import calibrate
    from mlperf_qx.quant.output_arena import prefaulted_buffer

    model, calib = _tiny_calibration(tmp_path, samples=4, seed=7)
    tensors = ["x", "c", "y"]
    assert calibrate.declared_sample_values(model, tensors) is None  # c's shape is not declared
    model = ir.serde.deserialize_model(onnx.shape_inference.infer_shapes(ir.serde.serialize_model(model)))
    session, batch, probe_feeds, probe = calibrate._calibration_session(model, tensors, calib, 1)
    assert calibrate.declared_sample_values(model, tensors) == sum(a.size for a in probe)
    right, wrong = prefaulted_buffer(sum(a.size for a in probe)), prefaulted_buffer(7)
    assert calibrate.OutputArena(session, tensors, probe_feeds, probe, batch, right).data is right
    assert calibrate.OutputArena(session, tensors, probe_feeds, probe, batch, wrong).data.size == right.size
    # Not declared, or declared with a non-batch leading axis or a symbolic inner one: no guess.
    values = {v.name: v for node in model.graph for v in node.outputs}
    for shape in (None, ir.Shape([4, 3, 4, 4]), ir.Shape(["n", "h", 4, 4])):
        saved, values["c"].shape = values["c"].shape, shape
        assert calibrate.declared_sample_values(model, tensors) is None
        values["c"].shape = saved
    used = []
    real = calibrate.OutputArena.__init__
    monkeypatch.setattr(calibrate.OutputArena, "__init__",
                        lambda self, *args: used.append(args[-1]) or real(self, *args))
    guessed = calibrate.observe(model, tensors, calib, Method.ENTROPY, batch=None, show_progress=False)
    assert used and used[0] is not None and used[0].size == sum(a.size for a in probe) * guessed.batch
    monkeypatch.setattr(calibrate, "declared_sample_values", lambda model, fetched: 5)  # a wrong guess
    plain = calibrate.observe(model, tensors, calib, Method.ENTROPY, batch=None, show_progress=False)
    # Stale declared shapes can claim terabytes: no guess above the bound, and a guess that cannot
    # be made (here: no memory for it) leaves the arena to make its own.
    monkeypatch.setattr(calibrate, "declared_sample_values", lambda model, fetched: 64 * 65536 * 65536)
    assert calibrate._premade_buffer(model, tensors, calib, 1) is None
    monkeypatch.setattr(calibrate, "declared_sample_values", lambda model, fetched: 5)
    monkeypatch.setattr(calibrate, "prefaulted_buffer", lambda values: (_ for _ in ()).throw(OSError(12, "no memory")))
    used.clear()
    refused = calibrate.observe(model, tensors, calib, Method.ENTROPY, batch=None, show_progress=False)
    assert used == [None]
    for other in (plain, refused):
        for name in tensors:
            np.testing.assert_array_equal(guessed.observers[name].hist, other.observers[name].hist)
            assert guessed.observers[name].width == other.observers[name].width


def test_minmax_reduced_in_the_graph_equals_binding_the_tensors(tmp_path, monkeypatch):
    """onnxruntime's ReduceMax/ReduceMin inside the graph give exactly max|x| and the counts that
    reading the tensors out gives; so does a mix, where the tensors not declared float32 (here
    x and the model output y, as if int64) are read out beside the reductions of the others."""
    from mlperf_qx.quant import calibrate

    model, calib = _tiny_calibration(tmp_path, samples=5, seed=9)
    tensors = ["x", "c", "y"]
    results = []
    for reducible in (set(tensors), set(), {"c"}):
        monkeypatch.setattr(calibrate, "float32_tensors", lambda model, tensors, ok=reducible: ok)
        seen = calibrate.observe(model, tensors, calib, Method.MINMAX, batch=2, show_progress=False, keep_outputs=3)
        assert seen.reference_outputs["y"].shape == (3, 2, 4, 4)
        results.append(seen)
    for seen in results[1:]:
        for name in tensors:
            a, b = results[0].observers[name], seen.observers[name]
            assert (a.amax, a.count) == (b.amax, b.count) and a.amax > 0
        np.testing.assert_array_equal(results[0].reference_outputs["y"], seen.reference_outputs["y"])


def test_at_batch_one_the_probe_is_the_first_sample_and_every_sample_is_observed_once(tmp_path, monkeypatch):
    """At batch 1 the probe run (sample 0) is the first batch: N-1 runs follow, and the observers
    equal observing each sample's tensors, read from a plain session of the model, in order
    (entropy bound into the arena and read out, minmax reduced in the graph)."""
    from mlperf_qx.quant import calibrate
    from mlperf_qx.quant.runtime_check import expose_tensors
    from mlperf_qx.runtime import open_session

    model, calib = _tiny_calibration(tmp_path, samples=5, seed=6)
    tensors = ["x", "c", "y"]
    proto = ir.serde.serialize_model(model)
    expose_tensors(proto.graph, tensors)
    plain = open_session(proto)
    expected = {method: {n: make_observer(method) for n in tensors} for method in (Method.ENTROPY, Method.MINMAX)}
    for sample_id in calib.ids:
        arrays = plain.run(tensors, calib.sample(sample_id))
        for observers in expected.values():
            for name, array in zip(tensors, arrays):
                observers[name].update(array)
    runs = []
    real_run = calibrate._run_batch
    monkeypatch.setattr(calibrate, "_run_batch", lambda *args: runs.append(1) or real_run(*args))
    for method, arena in ((Method.ENTROPY, True), (Method.ENTROPY, False), (Method.MINMAX, False)):
        monkeypatch.setattr(calibrate.OutputArena, "usable", staticmethod(lambda probe, batch, ok=arena: ok))
        runs.clear()
        seen = calibrate.observe(model, tensors, calib, method, batch=1, show_progress=False, keep_outputs=2)
        assert len(runs) == len(calib) - 1 and seen.batch == 1
        np.testing.assert_array_equal(seen.reference_outputs["y"],
                                      np.concatenate([plain.run(["y"], calib.sample(i))[0] for i in calib.ids[:2]]))
        for name in tensors:
            ours, theirs = seen.observers[name], expected[method][name]
            assert (ours.amax, ours.count) == (theirs.amax, theirs.count)
            if method is Method.ENTROPY:
                np.testing.assert_array_equal(ours.hist, theirs.hist)
                assert ours.width == theirs.width


def test_weights_by_reference_give_the_session_of_the_whole_model_and_leave_the_model_unchanged():
    """The calibration session's large weights go to onnxruntime as OrtValues, not through
    protobuf: the session computes exactly what the fully serialized model computes."""
    import onnx_ir as ir
    from onnx import TensorProto, helper, numpy_helper

    from mlperf_qx.quant.weights_by_reference import LOCATION, serialize_without_weights
    from mlperf_qx.runtime import open_session

    rng = np.random.default_rng(2)
    weight = rng.standard_normal((64, 32)).astype(np.float32)  # 8 KiB: by reference
    bias = rng.standard_normal(32).astype(np.float32)  # 128 B: stays inline
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    before = ir.serde.serialize_model(model).SerializeToString()
    proto, weights = serialize_without_weights(model)
    assert ir.serde.serialize_model(model).SerializeToString() == before
    assert list(weights) == ["w"] and {t.name: t.data_location for t in proto.graph.initializer} == {
        "w": TensorProto.EXTERNAL, "b": TensorProto.DEFAULT}
    assert proto.graph.initializer[0].external_data[0].value == LOCATION
    x = rng.standard_normal((3, 64)).astype(np.float32)
    by_reference = open_session(proto, external_weights=weights).run(None, {"x": x})[0]
    whole = open_session(ir.serde.serialize_model(model)).run(None, {"x": x})[0]
    np.testing.assert_array_equal(by_reference, whole)


def test_an_unread_weight_stays_inline_so_onnxruntime_can_drop_it():
    """onnxruntime drops an initializer no node reads and then refuses a reference to it
    ("Failed to find existing initializer"): smoothquant leaves the replaced weight unread."""
    import onnx_ir as ir
    from onnx import TensorProto, helper, numpy_helper

    from mlperf_qx.quant.weights_by_reference import serialize_without_weights
    from mlperf_qx.runtime import open_session

    rng = np.random.default_rng(3)
    read, unread = (rng.standard_normal((64, 32)).astype(np.float32) for _ in range(2))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])],
        [numpy_helper.from_array(read, "w"), numpy_helper.from_array(unread, "w_before_equalization")])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    proto, weights = serialize_without_weights(model)
    assert list(weights) == ["w"]
    x = rng.standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_array_equal(open_session(proto, external_weights=weights).run(None, {"x": x})[0], x @ read)


def _reduction_session(nonnegative: bool):
    """x (any length) -> Relu -> r; the calibration's in-graph statistics of r (planned as a Relu
    output when ``nonnegative``: max and NaN flag only) or of x; both tensors fetched too."""
    import onnx
    from onnx import TensorProto, helper

    from mlperf_qx.quant.reduce_in_graph import add_reductions, plan_reductions
    from mlperf_qx.runtime import open_session

    observed = "r" if nonnegative else "x"
    reductions = plan_reductions([observed], {"r"})
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n"]) for n in ("x", "r")])
    add_reductions(graph, reductions)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return open_session(model), reductions, observed


def test_in_graph_statistics_flag_every_nan_and_inf_wherever_it_is():
    """ReduceMax/ReduceMin skip a NaN at some positions in onnxruntime; the sum of squares flags
    it at every one, and an inf shows as an infinite max |x| (never as NaN); finite data, even
    data whose sum of squares overflows, gives exactly max |x|. Observed as any tensor and as a
    Relu's output (max only). Every position of short tensors, spread positions of long ones."""
    from mlperf_qx.quant.reduce_in_graph import batch_statistics

    rng = np.random.default_rng(11)
    for nonnegative in (False, True):
        session, reductions, observed = _reduction_session(nonnegative)
        for size in (0, 1, 2, 3, 7, 8, 9, 16, 17, 31, 64, 100, 1000, 70_001):
            base = (rng.standard_normal(size) * 1e3).astype(np.float32)
            if size:
                base[rng.integers(size)] = -3e38  # finite, but its square overflows the sum to inf
            positions = range(size) if size <= 100 else sorted({0, 1, size // 2, size - 2, size - 1,
                                                                 *rng.integers(0, size, 12).tolist()})
            cases = [(base, None)] + [(p, v) for p in positions for v in (np.nan, np.inf, -np.inf)]
            for position, value in cases:
                x = base.copy() if value is not None else base
                if value is not None:
                    x[position] = value
                outputs = session.run(None, {"x": x})
                seen = outputs[{"x": 0, "r": 1}[observed]]
                amax, counts = batch_statistics(outputs[2:], reductions)
                assert counts[0] == size
                if np.isnan(seen).any():
                    assert np.isnan(amax[0]), (nonnegative, size, position, value)
                else:
                    expected = float(np.abs(seen).max()) if size else 0.0
                    assert amax[0] == expected, (nonnegative, size, position, value, amax[0], expected)


def _segments(*parts):
    data = np.concatenate(parts).astype(np.float32)
    lengths = np.array([p.size for p in parts], np.int64)
    return data, np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64), lengths


def _same_observers(ours, theirs):
    for a, b in zip(ours, theirs):
        assert (a.amax, a.count) == (b.amax, b.count) and type(a) is type(b)
        if isinstance(a, HistogramObserver):
            assert a.width == b.width
            np.testing.assert_array_equal(a.hist, b.hist)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(8, 64), st.floats(1.5, 300.0), st.floats(0.01, 0.99999994), st.integers(0, 2**31))
def test_a_batch_binned_before_the_range_grew_is_absorbed_as_if_binned_after(bins, growth, edge, seed):
    """``bin_segments`` on the ranges as they were, then another batch grows them, then
    ``absorb_segments``: the same observers as ``update_segments`` one batch after the other.
    Both of its paths: merged to the grown width, and binned again where the batch's last bin
    has counts (a value near the old range's edge; ``edge`` 1 - 2**-24 rounds up to it)."""
    from mlperf_qx.quant.observers import absorb_segments, bin_segments, update_segments

    rng = np.random.default_rng(seed)
    first = _segments(rng.standard_normal(50), rng.standard_normal(30))
    grows = _segments(rng.standard_normal(40) * growth, rng.standard_normal(20))
    observers = [HistogramObserver(bins) for _ in range(2)]
    update_segments(observers, *first)
    top = np.float32(observers[0].width * bins * edge)  # inside the first range, near or at its edge
    late = _segments(np.append(rng.uniform(-1, 1, 25), [top, -top]), rng.standard_normal(10) * 0.5)
    before = copy.deepcopy(observers)
    binned = bin_segments(observers, *late)  # binned at the first ranges
    for sequence in (observers, before):
        update_segments(sequence, *grows)
    absorb_segments(observers, binned, *late)
    update_segments(before, *late)
    _same_observers(observers, before)


def test_minmax_segments_binned_apart_absorb_as_update_segments_does():
    from mlperf_qx.quant.observers import absorb_segments, bin_segments, update_segments

    batch = _segments(np.array([1.0, -7.5, 2.0]), np.zeros(0), np.array([np.nan, 1.0]))
    ours, theirs = [MinMaxObserver() for _ in range(3)], [MinMaxObserver() for _ in range(3)]
    maxima = absorb_segments(ours, bin_segments(ours, *batch), *batch)
    np.testing.assert_array_equal(maxima, update_segments(theirs, *batch))
    assert [(o.amax, o.count) for o in ours] == [(t.amax, t.count) for t in theirs] == [(7.5, 3), (0.0, 0), (0.0, 2)]


def _paired_calibration(tmp_path, scales):
    """The tiny model, its tensors declared float32 (as quantize's shape inference leaves them:
    arenas may be used), and one sample per scale, s0, s1, .. in that order."""
    from mlperf_qx.calibration.model_inputs import model_inputs
    from mlperf_qx.calibration.readers import open_calibration_set

    model, _ = _tiny_calibration(tmp_path, samples=1, seed=5)
    for node in model.graph:
        node.outputs[0].dtype = ir.DataType.FLOAT
    folder, rng = tmp_path / "pairs", np.random.default_rng(5)
    folder.mkdir()
    for i, scale in enumerate(scales):
        sample = np.full((3, 4, 4), scale) if scale > 1e30 else rng.standard_normal((3, 4, 4)) * scale
        np.save(folder / f"s{i}.npy", sample.astype(np.float32))
    return model, open_calibration_set(folder, model_inputs(model), None, None, None)


def test_batches_run_two_at_a_time_observe_exactly_what_one_at_a_time_does(tmp_path, monkeypatch):
    """Several batches at once (a one-thread session, each worker with its own arena, absorbed in
    batch order) leave the same observers and first outputs as one batch after the other, while
    the range grows on most samples; entropy bound into arenas, minmax reduced in the graph. The
    workers bin in pairs (a barrier after each binning), so that a batch is binned before the
    one ahead of it grew the range, and is merged to the grown width as it is absorbed."""
    import threading

    from mlperf_qx.quant import calibrate

    model, calib = _paired_calibration(tmp_path, [1, 1, 8, 1, 64, 2, 512, 3, 4096, 1])  # every other one grows the range
    tensors = ["x", "c", "y"]
    monkeypatch.setattr(calibrate, "usable_cores", lambda: 2)
    monkeypatch.setattr(calibrate, "MIN_BATCHES_PER_WORKER", 4)  # the few samples a test has run at once too
    measured, stale, pairs = [], [], threading.Barrier(2, timeout=60)
    real_measure, real_bin, real_absorb = calibrate._Pass._measure, calibrate.bin_segments, calibrate.absorb_segments
    monkeypatch.setattr(calibrate._Pass, "_measure", lambda self, *args: measured.append(args[0]) or real_measure(self, *args))
    monkeypatch.setattr(calibrate, "bin_segments", lambda *args: (real_bin(*args), pairs.wait())[0])
    monkeypatch.setattr(calibrate, "absorb_segments", lambda observers, binned, *args: stale.append(
        any(w * f < o.width for w, f, o in zip(binned.widths, binned.factors, observers))) or real_absorb(observers, binned, *args))
    for method in (Method.ENTROPY, Method.MINMAX):
        results = []
        for workers in (2, 1):
            monkeypatch.setattr(calibrate, "MAX_WORKERS", workers)
            measured.clear()
            results.append(calibrate.observe(model, tensors, calib, method, batch=1, show_progress=False, keep_outputs=3))
            alone = 1 if method is Method.MINMAX else 2  # the probe's batch, and the run that settles the arena
            assert len(measured) == (len(calib) - alone if workers == 2 else 0)
        _same_observers([results[0].observers[n] for n in tensors], [results[1].observers[n] for n in tensors])
        np.testing.assert_array_equal(results[0].reference_outputs["y"], results[1].reference_outputs["y"])
    assert len(stale) == len(calib) - 2 and any(stale)


def test_a_non_finite_sample_among_batches_run_at_once_is_named_as_one_at_a_time_names_it(tmp_path, monkeypatch):
    import pytest

    from mlperf_qx.errors import UserInputError
    from mlperf_qx.quant import calibrate

    model, calib = _paired_calibration(tmp_path, [1, 2, 1, 3, 1, 3e38, 1, 2, 1, 1])  # s5: its Conv overflows
    monkeypatch.setattr(calibrate, "usable_cores", lambda: 2)
    monkeypatch.setattr(calibrate, "MIN_BATCHES_PER_WORKER", 4)  # the few samples a test has run at once too
    for method in (Method.ENTROPY, Method.MINMAX):
        messages = []
        for workers in (2, 1):
            monkeypatch.setattr(calibrate, "MAX_WORKERS", workers)
            with pytest.raises(UserInputError) as failure:
                calibrate.observe(model, ["x", "c", "y"], calib, method, batch=1, show_progress=False)
            messages.append(str(failure.value))
        assert messages[0] == messages[1] and "is NaN or infinite on calibration sample(s) s5:" in messages[0]
