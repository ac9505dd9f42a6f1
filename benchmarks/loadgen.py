"""HTTP load from its own process, for a fixed duration, loopback only.

Closed loop: C clients, each sending the next request as soon as the last is answered (this
hides queueing: a slow server slows the clients). Open loop (`--rate`): requests leave at a
fixed rate whatever the answers, as real users arrive, so queueing shows in the latencies and
an overloaded server must shed load.

    python -m benchmarks.loadgen --url http://127.0.0.1:3000/api --concurrency 32 --duration 20
    python -m benchmarks.loadgen --url http://127.0.0.1:3000/api --rate 40 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time

import aiohttp
import numpy as np

PAIRS = [
    ("오늘은 비가 많이 온다.", "날씨가 맑다."),
    ("서울은 대한민국의 수도이다.", "대한민국의 수도는 서울이다."),
    ("그는 어제 도서관에서 책을 세 권 빌렸다.", "그는 책을 빌린 적이 없다."),
    ("이 식당은 주말에만 문을 연다.", "이 식당은 평일에도 영업한다."),
]


async def client(session, url, deadline, latencies, errors, offset) -> None:
    i = offset
    while time.perf_counter() < deadline:
        premise, hypothesis = PAIRS[i % len(PAIRS)]
        i += 1
        start = time.perf_counter()
        try:
            async with session.post(url, json={"premise": premise, "hypothesis": hypothesis}) as r:
                await r.read()
                if r.status != 200:
                    errors.append(r.status)
                    continue
        except (TimeoutError, aiohttp.ClientError) as exc:
            errors.append(type(exc).__name__)
            continue
        latencies.append(time.perf_counter() - start)


async def run(url: str, concurrency: int, duration: float) -> dict:
    latencies: list[float] = []
    errors: list = []
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        gc.collect()
        gc.freeze()  # the client's own full collections would count as server latency
        cpu, started = time.process_time(), time.perf_counter()
        deadline = started + duration
        await asyncio.gather(
            *(client(session, url, deadline, latencies, errors, k) for k in range(concurrency))
        )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    lat = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "mean_ms": float(lat.mean()) if lat.size else None,
        **own_cpu(cpu, elapsed),
    }


def own_cpu(cpu_s: float, wall_s: float) -> dict:
    """The load generator's own CPU: it shares the machine with the server, so a figure
    limited by the client shows here (share of all cores, and of one core)."""
    return {
        "wall_s": wall_s,
        "loadgen_cpu_s": cpu_s,
        "loadgen_cpu_share": cpu_s / (wall_s * (os.cpu_count() or 1)),
        "loadgen_core_share": cpu_s / wall_s,
    }


async def open_loop(url: str, rate: float, duration: float, max_in_flight: int = 2000) -> dict:
    """Requests at `rate` per second for `duration` s; answered latencies, 503s, others."""
    latencies: list[float] = []
    shed: list[int] = []
    errors: list = []

    async def one(session, i: int) -> None:
        premise, hypothesis = PAIRS[i % len(PAIRS)]
        start = time.perf_counter()
        try:
            async with session.post(url, json={"premise": premise, "hypothesis": hypothesis}) as r:
                await r.read()
                if r.status == 503:
                    shed.append(r.status)
                elif r.status != 200:
                    errors.append(r.status)
                else:
                    latencies.append(time.perf_counter() - start)
        except (TimeoutError, aiohttp.ClientError) as exc:
            errors.append(type(exc).__name__)

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        gc.collect()
        gc.freeze()
        cpu, started = time.process_time(), time.perf_counter()
        tasks, i = [], 0
        while (due := started + i / rate) < started + duration:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(session, i)))
            i += 1
        await asyncio.gather(*tasks)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    lat = np.asarray(latencies) * 1000
    return {
        "rate": rate,
        "sent": i,
        "answered": len(latencies),
        "shed_503": len(shed),
        "other_errors": len(errors),
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "max_ms": float(lat.max()) if lat.size else None,
        **own_cpu(cpu, elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--rate", type=float, help="open loop: requests per second")
    args = parser.parse_args()
    if args.rate:
        print(json.dumps(asyncio.run(open_loop(args.url, args.rate, args.duration))))
    else:
        print(json.dumps(asyncio.run(run(args.url, args.concurrency, args.duration))))


if __name__ == "__main__":
    main()
