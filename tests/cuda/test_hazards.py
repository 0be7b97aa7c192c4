"""The stream-order hazard checker: correctly ordered programs pass, every unordered
conflicting pair is caught and named — on the checker alone, through the device layer (EmuDevice
always, a real GPU under the ``gpu`` marker), and on random programs against a brute-force
happens-before reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_infer.cuda.hazards import HazardChecker, Span
from edge_infer.errors import HazardError
from tests.cuda import device_kernels as tk

A = 1  # an allocation id


def span(start: int, stop: int, alloc: int = A) -> Span:
    return Span(alloc, start, stop, "arena")


# -- the checker alone ----------------------------------------------------------------------


def test_stream_order_orders_work_on_one_stream() -> None:
    hc = HazardChecker()
    s = hc.add_stream("main")
    hc.stream_op(s, "conv1", writes=[span(0, 64)])
    hc.stream_op(s, "conv2", reads=[span(0, 64)], writes=[span(64, 128)])
    hc.stream_op(s, "conv3", reads=[span(64, 128)], writes=[span(0, 64)])


def test_event_orders_a_consumer_after_its_producer() -> None:
    hc = HazardChecker()
    a, b = hc.add_stream("main"), hc.add_stream("aux")
    hc.stream_op(a, "producer", writes=[span(0, 64)])
    hc.record("e", a)
    hc.wait(b, "e")
    hc.stream_op(b, "consumer", reads=[span(0, 64)])


def test_a_removed_event_is_caught_naming_both_operations() -> None:
    hc = HazardChecker()
    a, b = hc.add_stream("main"), hc.add_stream("aux")
    hc.stream_op(a, "producer", writes=[span(0, 64)])
    with pytest.raises(HazardError) as info:
        hc.stream_op(b, "consumer", reads=[span(0, 64)])
    err = info.value
    assert "read-after-write" in str(err) and "\n" not in str(err)
    assert "'producer' on stream 'main'" in err.first and "[0:64)" in err.first
    assert "'consumer' on stream 'aux'" in err.second


def test_write_after_read_across_streams_is_caught() -> None:
    hc = HazardChecker()
    a, b = hc.add_stream("main"), hc.add_stream("aux")
    hc.stream_op(a, "reader", reads=[span(0, 32)])
    with pytest.raises(HazardError, match="write-after-read"):
        hc.stream_op(b, "writer", writes=[span(16, 48)])


def test_write_after_write_across_streams_is_caught() -> None:
    hc = HazardChecker()
    a, b = hc.add_stream("main"), hc.add_stream("aux")
    hc.stream_op(a, "w1", writes=[span(0, 32)])
    with pytest.raises(HazardError, match="write-after-write"):
        hc.stream_op(b, "w2", writes=[span(0, 32)])


def test_overlapping_but_not_identical_ranges_conflict() -> None:
    hc = HazardChecker()
    a, b = hc.add_stream("main"), hc.add_stream("aux")
    hc.stream_op(a, "producer", writes=[span(0, 64)])
    with pytest.raises(HazardError, match=r"\[63:65\)"):
        hc.stream_op(b, "consumer", reads=[span(63, 65)])


def test_disjoint_ranges_and_read_read_pairs_are_not_flagged() -> None:
    hc = HazardChecker()
    a, b = hc.add_stream("main"), hc.add_stream("aux")
    hc.stream_op(a, "left", writes=[span(0, 64)], reads=[span(128, 256)])
    hc.stream_op(b, "right", writes=[span(64, 128)], reads=[span(128, 256)])
    hc.stream_op(b, "other allocation", writes=[span(0, 64, alloc=2)])


def test_host_read_of_pinned_memory_needs_a_synchronize() -> None:
    hc = HazardChecker()
    s = hc.add_stream("main")
    hc.stream_op(s, "dtoh", writes=[span(0, 16)])
    with pytest.raises(HazardError, match="'host read' on host"):
        hc.host_op("host read", reads=[span(0, 16)])
    hc.sync_stream(s)
    hc.host_op("host read", reads=[span(0, 16)])


def test_host_writes_before_an_enqueue_are_ordered_before_it() -> None:
    hc = HazardChecker()
    s = hc.add_stream("main")
    hc.host_op("fill staging", writes=[span(0, 16)])
    hc.stream_op(s, "htod", reads=[span(0, 16)])
    with pytest.raises(HazardError, match="write-after-read"):  # refilling before it ran
        hc.host_op("refill staging", writes=[span(0, 16)])
    hc.sync_event("never recorded")  # a no-op, as in CUDA
    hc.record("copied", s)
    hc.sync_event("copied")
    hc.host_op("refill staging", writes=[span(0, 16)])


def test_a_wait_sees_the_record_current_when_it_is_issued() -> None:
    hc = HazardChecker()
    a, b = hc.add_stream("main"), hc.add_stream("aux")
    hc.stream_op(a, "x", writes=[span(0, 8)])
    hc.record("e", a)
    hc.wait(b, "e")
    hc.stream_op(a, "y", writes=[span(8, 16)])
    hc.record("e", a)  # re-recorded after the wait: the wait does not move
    with pytest.raises(HazardError, match="'y'"):
        hc.stream_op(b, "reads y", reads=[span(8, 16)])


def test_a_covering_read_does_not_hide_an_earlier_write() -> None:
    """Pruning drops an access only for one that conflicts with all it conflicts with."""
    hc = HazardChecker()
    a, b, c = hc.add_stream("a"), hc.add_stream("b"), hc.add_stream("c")
    hc.stream_op(a, "write", writes=[span(0, 8)])
    hc.record("e", a)
    hc.wait(b, "e")
    hc.stream_op(b, "ordered read", reads=[span(0, 16)])
    with pytest.raises(HazardError, match="'write' on stream 'a'.*'unordered read'"):
        hc.stream_op(c, "unordered read", reads=[span(4, 6)])


def test_an_unordered_covering_read_does_not_hide_an_earlier_read() -> None:
    hc = HazardChecker()
    a, b = hc.add_stream("a"), hc.add_stream("b")
    hc.stream_op(a, "read on a", reads=[span(0, 8)])
    hc.stream_op(b, "wider read on b", reads=[span(0, 16)])
    with pytest.raises(HazardError, match="'read on a' on stream 'a'.*'write on b'"):
        hc.stream_op(b, "write on b", writes=[span(2, 4)])


def test_device_synchronize_orders_everything_before_it() -> None:
    hc = HazardChecker()
    a, b = hc.add_stream("main"), hc.add_stream("aux")
    hc.stream_op(a, "x", writes=[span(0, 8)])
    hc.sync_device()
    hc.stream_op(b, "y", writes=[span(0, 8)])
    assert hc.pending() == 1  # x was pruned: the host saw it finish


def test_access_lists_stay_short_over_long_runs() -> None:
    """1000 inferences of a 3-layer chain on two streams joined by events, no host sync."""
    hc = HazardChecker()
    a, b = hc.add_stream("main"), hc.add_stream("aux")
    for i in range(1000):
        hc.stream_op(a, f"in{i}", writes=[span(0, 64)])
        hc.record(("x", i % 2), a)
        hc.wait(b, ("x", i % 2))
        hc.stream_op(b, f"mid{i}", reads=[span(0, 64)], writes=[span(64, 128)])
        hc.record(("y", i % 2), b)
        hc.wait(a, ("y", i % 2))
        hc.stream_op(a, f"out{i}", reads=[span(64, 128)], writes=[span(128, 192)])
    assert hc.pending(A) <= 6


# -- through the device layer ---------------------------------------------------------------


@pytest.fixture(params=tk.DEVICE_KINDS)
def cuda_device(request):
    with tk.open_device(request.param) as device:
        assert device.hazards is not None
        yield device


def _producer_consumer(device, *, with_event: bool):
    mod = tk.load(device)
    n = 1024
    sa, sb = device.stream("main"), device.stream("aux")
    x = device.allocate(4 * n, "x")
    y = device.allocate(4 * n, "y")
    device.launch(
        mod.function("fill"),
        4,
        128,
        tk.FillParams(x.ptr, n, 0, 3.0),
        stream=sa,
        writes=[x],
        label="producer",
    )
    if with_event:
        ev = device.event("x ready")
        ev.record(sa)
        sb.wait(ev)
    device.launch(
        mod.function("add"),
        4,
        128,
        tk.AddParams(x.ptr, y.ptr, n, 1.0),
        stream=sb,
        reads=[x],
        writes=[y],
        label="consumer",
    )
    return sb, y


def test_device_passes_a_correctly_ordered_program(cuda_device) -> None:
    sb, y = _producer_consumer(cuda_device, with_event=True)
    pinned = cuda_device.allocate_host(y.nbytes, "out")
    cuda_device.copy_dtoh(pinned, y, sb)
    sb.synchronize()
    cuda_device.host_access("read output", reads=[pinned])
    np.testing.assert_array_equal(pinned.view(np.float32), np.full(1024, 4.0, np.float32))


def test_device_catches_a_removed_event(cuda_device) -> None:
    with pytest.raises(HazardError) as info:
        _producer_consumer(cuda_device, with_event=False)
    assert "'producer' on stream 'main'" in info.value.first
    assert "'consumer' on stream 'aux'" in info.value.second
    assert "'x'[0:4096)" in info.value.first


def test_device_catches_write_after_read_and_partial_overlap(cuda_device) -> None:
    mod = tk.load(cuda_device)
    sa, sb = cuda_device.stream("main"), cuda_device.stream("aux")
    x, y, z = (cuda_device.allocate(4096, name) for name in "xyz")
    cuda_device.memset(x, 0, sa)
    sa.synchronize()
    cuda_device.launch(
        mod.function("add"),
        1,
        32,
        tk.AddParams(x.ptr, y.ptr, 1024, 1.0),
        stream=sa,
        reads=[x],
        writes=[y],
        label="reader",
    )
    with pytest.raises(HazardError, match="write-after-read.*'clobber'"):
        cuda_device.memset(x.region(4000, 96), 0, sb, label="clobber")
    with pytest.raises(HazardError, match=r"read-after-write.*'y'\[2048:2052\) by 'peek'"):
        cuda_device.copy_dtod(z.region(0, 4), y.region(2048, 4), sb, label="peek")
    # read/read pairs and untouched allocations are fine
    cuda_device.copy_dtod(z, x, sb, label="second reader")
    cuda_device.synchronize()


def test_device_catches_a_host_read_before_synchronize(cuda_device) -> None:
    with cuda_device.stream("main") as s:
        d = cuda_device.allocate(256, "d")
        h = cuda_device.allocate_host(256, "h")
        cuda_device.memset(d, 1, s)
        cuda_device.copy_dtoh(h, d, s, label="download")
        with pytest.raises(HazardError, match="'download' on stream 'main'.*'read result'"):
            cuda_device.host_access("read result", reads=[h])
        s.synchronize()
        cuda_device.host_access("read result", reads=[h])
        assert (h.array == 1).all()


def test_destroying_a_stream_does_not_synchronize_the_host(cuda_device) -> None:
    """cudaStreamDestroy returns before the stream's work is done: only a device synchronize
    (or an event recorded before) orders the host after it."""
    d = cuda_device.allocate(64, "d")
    h = cuda_device.allocate_host(64, "h")
    with cuda_device.stream("short-lived") as s:
        cuda_device.memset(d, 2, s)
        cuda_device.copy_dtoh(h, d, s, label="download")
    with pytest.raises(HazardError, match="'download'"):
        cuda_device.host_access("read", reads=[h])
    cuda_device.synchronize()
    cuda_device.host_access("read", reads=[h])
    assert (h.array == 2).all()


# -- random programs against a brute-force reference ----------------------------------------

STREAMS, EVENTS, BYTES = 3, 2, 6

_range = st.tuples(st.integers(0, BYTES - 1), st.integers(1, 4)).map(
    lambda t: (t[0], min(BYTES, t[0] + t[1]))
)
_alloc = st.sampled_from([1, 1, 1, 2])
_accesses = st.tuples(
    st.lists(st.tuples(_alloc, _range), max_size=2),
    st.lists(st.tuples(_alloc, _range), max_size=2),
)
_stream_op = st.tuples(st.just("op"), st.integers(0, STREAMS - 1), _accesses)
# stream work and event edges weighted up: they make the interesting orderings
_op = st.one_of(
    _stream_op,
    _stream_op,
    st.tuples(st.just("record"), st.integers(0, STREAMS - 1), st.integers(0, EVENTS - 1)),
    st.tuples(st.just("wait"), st.integers(0, STREAMS - 1), st.integers(0, EVENTS - 1)),
    st.tuples(st.just("host"), st.just(0), _accesses),
    st.tuples(st.just("record"), st.integers(0, STREAMS - 1), st.integers(0, EVENTS - 1)),
    st.tuples(st.just("wait"), st.integers(0, STREAMS - 1), st.integers(0, EVENTS - 1)),
    st.tuples(st.just("sync_stream"), st.integers(0, STREAMS - 1), st.just(0)),
    st.tuples(st.just("sync_event"), st.just(0), st.integers(0, EVENTS - 1)),
    st.tuples(st.just("sync_device"), st.just(0), st.just(0)),
)


@st.composite
def _handoff(draw) -> list:
    """A producer on one stream, an event, a consumer on another: the motif that makes event
    edges matter (random single ops rarely line up into one)."""
    s, t = draw(st.integers(0, STREAMS - 1)), draw(st.integers(0, STREAMS - 1))
    e = draw(st.integers(0, EVENTS - 1))
    produced, consumed, written = draw(_range), draw(_range), draw(_range)
    return [
        ("op", s, ([], [(1, produced)])),
        ("record", s, e),
        ("wait", t, e),
        ("op", t, ([(1, consumed)], [(1, written)])),
    ]


_program = st.lists(st.one_of(_op.map(lambda op: [op]), _handoff()), max_size=8).map(
    lambda chunks: [op for chunk in chunks for op in chunk]
)


def _reference_hazards(program) -> list[int]:
    """Indices of the ops that race with an earlier (recorded) access, by transitive closure
    over the explicit ordering edges: stream order, host order, host -> enqueued work,
    record -> wait, stream/event/all-streams -> host synchronize. A racing op's accesses are
    not recorded (the checker refuses it), and the program goes on."""
    found = []
    preds: list[set[int]] = []
    last = {s: None for s in range(STREAMS)}
    host = None
    events: dict[int, int] = {}
    accesses: list[tuple[int, int, int, int, bool]] = []  # node, alloc, start, stop, write

    def node(*sources) -> int:
        preds.append({p for p in sources if p is not None})
        return len(preds) - 1

    def before(a: int, b: int) -> bool:
        seen, todo = set(), [b]
        while todo:
            n = todo.pop()
            if n == a:
                return True
            for p in preds[n] - seen:
                seen.add(p)
                todo.append(p)
        return False

    for i, (kind, x, y) in enumerate(program):
        if kind in ("op", "host"):
            if kind == "op":
                n = last[x] = node(last[x], host)
            else:
                n = host = node(host)
            new = [(n, al, a, b, False) for al, (a, b) in y[0]]
            new += [(n, al, a, b, True) for al, (a, b) in y[1]]
            if any(
                al0 == al and a0 < b and a < b0 and (w or w0) and not before(m0, m)
                for m, al, a, b, w in new
                for m0, al0, a0, b0, w0 in accesses
            ):
                found.append(i)
            else:
                accesses += new
        elif kind == "record":
            last[x] = events[y] = node(last[x], host)
        elif kind == "wait":
            last[x] = node(last[x], host, events.get(y))
        elif kind == "sync_stream":
            host = node(host, last[x])
        elif kind == "sync_event":
            host = node(host, events.get(y))
        else:
            host = node(host, *last.values())
    return found


def _checker_hazards(program) -> list[int]:
    found = []
    hc = HazardChecker()
    agents = [hc.add_stream(f"s{i}") for i in range(STREAMS)]
    for i, (kind, x, y) in enumerate(program):
        try:
            if kind in ("op", "host"):
                reads = [Span(al, a, b) for al, (a, b) in y[0]]
                writes = [Span(al, a, b) for al, (a, b) in y[1]]
                if kind == "op":
                    hc.stream_op(agents[x], f"op{i}", reads, writes)
                else:
                    hc.host_op(f"host{i}", reads, writes)
            elif kind == "record":
                hc.record(y, agents[x])
            elif kind == "wait":
                hc.wait(agents[x], y)
            elif kind == "sync_stream":
                hc.sync_stream(agents[x])
            elif kind == "sync_event":
                hc.sync_event(y)
            else:
                hc.sync_device()
        except HazardError:
            found.append(i)
    return found


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(_op, max_size=16))
def test_random_programs_match_the_happens_before_reference(program) -> None:
    assert _checker_hazards(program) == _reference_hazards(program)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_program)
def test_random_handoffs_match_the_happens_before_reference(program) -> None:
    assert _checker_hazards(program) == _reference_hazards(program)
