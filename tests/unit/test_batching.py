"""The in-process adaptive batcher the service uses (klue_nli/inference/batching.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from klue_nli.inference.batching import BatchError, MicroBatcher, Overloaded, WorkerStopped


class Model:
    """Doubles numbers; records each call's batch and can be slowed down or made to fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.delay = delay
        self.fail_on: int | None = None
        self.threads: set[str] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        self.calls.append(list(items))
        time.sleep(self.delay)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [2 * x for x in items]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_model_calls_and_get_their_own_answers():
    model = Model(delay=0.01)
    batcher = MicroBatcher(model, max_batch_size=8, max_latency_ms=5000)

    async def main():
        return await asyncio.gather(*(batcher.submit([i, 100 + i]) for i in range(20)))

    results = run(main())
    assert results == [[2 * i, 200 + 2 * i] for i in range(20)]
    assert len(model.calls) < 20  # batched, not one call per request
    assert max(len(c) for c in model.calls) <= 8
    for call in model.calls:  # a request's pairs stay together, in order
        for a, b in zip(call[::2], call[1::2], strict=True):
            assert b == a + 100
    assert threading.main_thread().name not in model.threads  # the event loop stays free


def test_a_lone_request_runs_at_once_without_waiting_for_a_batch():
    batcher = MicroBatcher(Model(), max_batch_size=32, max_latency_ms=5000)

    async def main():
        start = time.perf_counter()
        out = await batcher.submit([1])
        return out, time.perf_counter() - start

    out, elapsed = run(main())
    assert out == [2]
    assert elapsed < 0.5


def test_a_request_larger_than_the_batch_limit_is_not_split_or_dropped():
    model = Model()
    batcher = MicroBatcher(model, max_batch_size=4, max_latency_ms=5000)
    assert run(batcher.submit(list(range(10)))) == [2 * x for x in range(10)]
    assert model.calls == [list(range(10))]


def test_a_failing_batch_fails_its_requests_only_and_the_batcher_goes_on():
    model = Model(delay=0.02)
    model.fail_on = 13
    batcher = MicroBatcher(model, max_batch_size=64, max_latency_ms=5000)

    async def main():
        first = await asyncio.gather(
            batcher.submit([1]), batcher.submit([13]), return_exceptions=True
        )
        later = await batcher.submit([5])
        return first, later

    first, later = run(main())
    assert any(isinstance(r, ValueError) and "bad item 13" in str(r) for r in first)
    assert later == [10]


def test_requests_that_waited_past_max_latency_are_refused_not_queued_forever():
    model = Model(delay=0.2)
    batcher = MicroBatcher(model, max_batch_size=1, max_latency_ms=50)

    async def main():
        calls = (batcher.submit([i]) for i in range(5))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = run(main())
    assert results[0] == [0]
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert refused, results
    assert len(model.calls) < 5  # refused requests never reached the model


def test_requests_that_cannot_be_answered_within_max_latency_are_refused_not_answered_late():
    """At admission when the batches ahead already take too long (at once), and at batch start
    when the wait so far plus the expected model call would pass max_latency_ms."""
    model = Model(delay=0.2)
    batcher = MicroBatcher(model, max_batch_size=1, max_latency_ms=300)

    async def timed(i):
        start = time.perf_counter()
        try:
            return await batcher.submit([i]), time.perf_counter() - start
        except Overloaded as exc:
            return exc, time.perf_counter() - start

    async def main():
        await batcher.submit([0])  # measures one batch: 0.2 s
        return await asyncio.gather(*(timed(i) for i in range(1, 6)))

    results = run(main())
    answered = [t for r, t in results if not isinstance(r, Overloaded)]
    refused = sorted(t for r, t in results if isinstance(r, Overloaded))
    assert batcher.batch_s == pytest.approx(0.2, abs=0.05)
    assert len(answered) == 1 and len(refused) == 4, results
    # 3, 4, 5: one in flight and one queued = 0.4 s ahead; told at once
    assert max(refused[:3]) < 0.05
    # 2 was admitted (0.2 s ahead) but at its start had waited 0.2 s, with 0.2 s to come
    assert refused[3] == pytest.approx(0.2, abs=0.1)
    assert max(answered) < 0.3 + 0.05  # within max_latency: none answered late
    assert model.calls == [[0], [1]]  # refused requests never reached the model


def test_the_latency_budget_counts_from_the_request_s_arrival():
    """A request that spent most of max_latency_ms before the queue (reading, validation) is
    refused where the same request fresh would be answered, at admission and at batch start."""
    model = Model(delay=0.1)
    batcher = MicroBatcher(model, max_batch_size=1, max_latency_ms=400)

    async def main():
        await batcher.submit([0])  # measures one batch: 0.1 s
        fresh = await batcher.submit([1], arrived=time.monotonic())
        early = time.monotonic() - 0.35  # 0.35 s spent before the queue, 0.1 s to come
        with pytest.raises(Overloaded):
            await batcher.submit([2], arrived=early)
        # admitted (0.25 s + one batch ahead), but at its batch start 0.35 s + 0.1 s > 0.4 s
        first = asyncio.ensure_future(batcher.submit([3]))
        await asyncio.sleep(0.01)
        late = asyncio.ensure_future(batcher.submit([4], arrived=time.monotonic() - 0.25))
        return fresh, await first, await asyncio.gather(late, return_exceptions=True)

    fresh, first, [late] = run(main())
    assert fresh == [2] and first == [6]
    assert isinstance(late, Overloaded), late
    assert model.calls == [[0], [1], [3]]  # the refused requests never reached the model


def test_a_cancelled_request_never_reaches_the_model():
    model = Model(delay=0.1)
    batcher = MicroBatcher(model, max_batch_size=1, max_latency_ms=5000)

    async def main():
        first = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.01)  # the first call is running
        gone = asyncio.ensure_future(batcher.submit([2]))
        await asyncio.sleep(0.01)
        gone.cancel()
        third = await batcher.submit([3])
        return await first, third

    assert run(main()) == ([2], [6])
    assert [2] not in model.calls


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(Model(), max_batch_size=0, max_latency_ms=10)


def test_length_grouped_sampler_groups_lengths_without_a_length_curriculum():
    import numpy as np

    from klue_nli.model.datamodule import LengthGroupedSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 65, size=3200 + 100)  # two whole windows and a partial one
    order = list(LengthGroupedSampler(lengths, batch_size=32, seed=1))
    assert sorted(order) == list(range(len(lengths)))  # every pair once per epoch
    batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 5  # similar lengths in a batch (random batches: about 50)
    first_window = [int(lengths[b].max()) for b in batches[:50]]
    assert first_window[0] == max(first_window)  # the longest batch first (memory check)
    steps = np.diff(first_window[1:49])
    assert (steps > 0).any() and (steps < 0).any()  # then no monotone length order
    # the last window (3 batches and 4 pairs): its partial batch, the 4 shortest, comes last,
    # so no loader batch straddles two of the sampler's batches
    assert lengths[order[-4:]].max() <= lengths[order[3200:-4]].min()


def test_a_short_result_list_fails_only_that_batch_and_logs_it(caplog):
    """A model call returning fewer results than items must not hand later requests the
    shifted remainder: its own requests fail (BatchError, a 500), the next batch is right."""
    model = Model(delay=0.02)
    original = model.__call__
    calls = []

    def short_once(items):
        calls.append(items)
        out = original(items)
        return out[:-1] if len(calls) == 1 else out

    batcher = MicroBatcher(short_once, max_batch_size=64, max_latency_ms=5000)

    async def main():
        first = await asyncio.gather(
            batcher.submit([1]), batcher.submit([2, 3]), return_exceptions=True
        )
        later = await asyncio.gather(batcher.submit([4]), batcher.submit([5, 6]))
        return first, later

    with caplog.at_level("ERROR", logger="klue_nli.inference.batching"):
        first, later = run(main())
    assert all(isinstance(r, BatchError) for r in first), first
    assert later == [[8], [10, 12]]
    assert "2 results for 3 items" in caplog.text


class Fatal(BaseException):
    """Escapes the batcher's per-batch `except Exception`: it kills the worker task."""


def test_a_dead_worker_fails_its_waiting_requests_and_is_restarted():
    """Before: the queue died with the worker, its futures hung forever, and the queued count
    kept admission refusing every later request."""
    gate = threading.Event()

    def model(items):
        if 99 in items:
            gate.wait(5)
            raise Fatal()
        return [2 * x for x in items]

    batcher = MicroBatcher(model, max_batch_size=1, max_latency_ms=60_000)

    async def main():
        batcher.batch_s = 0.001  # admission has figures: a leaked count would refuse
        dying = asyncio.ensure_future(batcher.submit([99]))
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(batcher.submit([i])) for i in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        done = await asyncio.wait_for(
            asyncio.gather(dying, *queued, return_exceptions=True), timeout=5
        )
        later = await asyncio.wait_for(batcher.submit([7]), timeout=5)
        return done, later

    done, later = run(main())
    assert all(isinstance(r, WorkerStopped | Fatal) for r in done), done
    assert later == [14]


def closed_loop(fill_ms: float, clients: int = 8, rounds: int = 12) -> list[int]:
    """`clients` each send a request, and the next one a staggered moment after the answer
    (as the event loop parses them one by one); the batch sizes the model saw. The model's
    60 ms make the fill's deadline 20 ms (at most half a batch): 12 ms more than the last
    client's stagger, room for a busy machine's scheduling."""
    model = Model(delay=0.06)
    batcher = MicroBatcher(model, max_batch_size=32, max_latency_ms=5000, fill_ms=fill_ms)

    async def client(k: int) -> None:
        for _ in range(rounds):
            await batcher.submit([k])
            await asyncio.sleep(0.001 * (k + 1))

    async def main():
        await asyncio.gather(*(client(k) for k in range(clients)))

    run(main())
    return [len(c) for c in model.calls]


def test_a_batch_waits_for_the_clients_the_last_one_answered():
    filled = closed_loop(fill_ms=20)
    assert filled[2:-1] == [8] * len(filled[2:-1]), filled  # after warm-up, every batch is full
    assert len(filled) <= 12 + 3
    # without the wait the first arrivals start a batch alone and the rest queue behind it
    at_once = closed_loop(fill_ms=0)
    assert min(at_once[2:-1]) < 8 and len(at_once) > len(filled), at_once


def test_a_lone_client_never_waits_for_the_fill():
    model = Model(delay=0.03)
    batcher = MicroBatcher(model, max_batch_size=32, max_latency_ms=5000, fill_ms=500)

    async def main():
        took = []
        for i in range(5):
            start = time.perf_counter()
            await batcher.submit([i])
            took.append(time.perf_counter() - start)
        return took

    assert max(run(main())) < 0.03 + 0.015  # the model's time, no fill wait on top


def test_each_answered_batch_is_observed():
    seen = []
    model = Model(delay=0.01)
    batcher = MicroBatcher(
        model, max_batch_size=8, max_latency_ms=5000, observe=lambda *a: seen.append(a)
    )

    async def main():
        await asyncio.gather(*(batcher.submit([i]) for i in range(20)))

    run(main())
    assert [pairs for pairs, _, _ in seen] == [len(c) for c in model.calls]
    assert sum(len(waits) for _, waits, _ in seen) == 20  # one queue wait per request
    assert all(model_s >= 0.01 for _, _, model_s in seen)


def test_the_length_grouped_order_follows_the_trainers_epoch():
    """A run resumed at epoch 2 sees epoch 2's order, not epoch 0's: Lightning tells the
    sampler the epoch (its own helper, as the fit loop calls it), and the order depends on it
    alone."""
    import numpy as np
    from lightning_fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    from klue_nli.model.datamodule import LengthGroupedSampler

    lengths = np.random.default_rng(0).integers(5, 64, size=400)
    straight = LengthGroupedSampler(lengths, batch_size=8, seed=7)
    orders = []
    for epoch in range(3):
        _set_sampler_epoch(DataLoader(range(400), sampler=straight, batch_size=8), epoch)
        orders.append(list(straight))
    assert orders[0] != orders[1] != orders[2]
    resumed = LengthGroupedSampler(lengths, batch_size=8, seed=7)
    _set_sampler_epoch(DataLoader(range(400), sampler=resumed, batch_size=8), 2)
    assert list(resumed) == orders[2]
    assert list(resumed) == orders[2]  # iterating again is the same epoch, the same order
