"""The arithmetic behind `make bench`'s serving figures (benchmarks/serving.py), on
hand-made scrapes and phases: what a phase's /metrics difference says, medians and spreads,
ratios paired by round."""

from __future__ import annotations

import pytest

from benchmarks.serving import ratios, service_stats, spread, summarise

API = "klue_nli_request_duration_seconds"


def scrape(requests: int, in_app_s: float, calls: int, pairs: int, buckets: dict) -> dict:
    out = {
        f"{API}_count": requests,
        f"{API}_sum": in_app_s,
        "klue_nli_batch_pairs_count": calls,
        "klue_nli_batch_pairs_sum": pairs,
        "klue_nli_batch_padded_tokens_sum": 20.0 * pairs,
        "klue_nli_tokens_total|real": 16.0 * pairs,
        "klue_nli_tokens_total|padded": 20.0 * pairs,
        "klue_nli_queue_wait_seconds_count": requests,
        "klue_nli_queue_wait_seconds_sum": 0.01 * requests,
        "klue_nli_model_seconds_count": calls,
        "klue_nli_model_seconds_sum": 0.1 * calls,
    }
    for edge, count in buckets.items():
        out[f"klue_nli_batch_pairs_bucket|{edge}"] = count
    return out


def test_a_phase_splits_into_queue_model_app_and_outside():
    before = scrape(10, 1.0, 5, 10, {"1.0": 5, "8.0": 5, "+Inf": 5})
    # 40 more requests in 5 more calls: 1 call of 1 pair, 4 of 8 (cumulative buckets)
    after = scrape(50, 1.0 + 40 * 0.15, 10, 50, {"1.0": 6, "8.0": 10, "+Inf": 10})
    s = service_stats(before, after, client_mean_ms=160.0)
    assert s["model_calls"] == 5 and s["pairs_per_call"] == 8.0
    assert s["pairs_per_call_histogram"] == {"<=1": 1, "<=8": 4}
    assert s["padding_share"] == pytest.approx(0.2)
    assert s["in_app_ms"] == pytest.approx(150.0)
    assert s["queue_ms"] == pytest.approx(10.0)
    assert s["model_ms_per_call"] == pytest.approx(100.0)
    assert s["app_other_ms"] == pytest.approx(40.0)
    assert s["outside_app_ms"] == pytest.approx(10.0)
    assert service_stats(before, before, 1.0) == {}  # nothing answered: no split


def test_ratios_pair_the_phases_of_one_round_and_medians_judge():
    runs = {
        "service": {"c32": [{"rps": 60.0}, {"rps": 30.0}, {"rps": 66.0}]},
        "flask": {"c32": [{"rps": 10.0}, {"rps": 5.0}, {"rps": 12.0}]},
    }
    # round by round 6.0, 6.0, 5.5: a slow round hits both sides, the ratio holds
    assert ratios(runs, "service", "flask") == {"c32": {"median": 6.0, "min": 5.5, "max": 6.0}}
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}


def test_summary_sums_errors_and_finds_an_idle_worker():
    def phase(rps, errors, shares):
        return {
            "rps": rps,
            "p50_ms": 10.0,
            "p99_ms": 20.0,
            "errors": errors,
            "loadgen_cpu_share": 0.02,
            "server": {
                "cpu_share": sum(shares) / 2,
                "per_process_core_share": [
                    {"role": "worker", "core_share": s} for s in shares
                ] + [{"role": "main", "core_share": 0.0}],
            },
        }  # fmt: skip

    out = summarise([phase(50, 0, [0.98, 0.97]), phase(30, 2, [0.99, 0.01])])
    assert out["errors"] == 2
    assert out["rps"] == {"median": 40.0, "min": 30, "max": 50}
    assert out["least_busy_worker_core_share"]["min"] == 0.01  # all clients on one worker
    assert out["server_cpu_share"]["max"] == pytest.approx(0.975)
