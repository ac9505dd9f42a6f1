"""A short soak of the real service (the 5-minute one is `make soak`): steady concurrent load
from a separate process, no errors, the server stays up, memory does not run away."""

from __future__ import annotations

import pytest

from benchmarks.soak import rss_growth, soak


def test_rss_growth_is_measured_from_the_end_of_warm_up():
    samples = [(0.0, 100), (5.0, 180), (10.0, 200), (20.0, 204), (30.0, 210)]
    warm, end, growth = rss_growth(samples, warmup_s=10)
    assert (warm, end) == (200, 210)
    assert growth == pytest.approx(0.05)
    with pytest.raises(ValueError, match="too few"):
        rss_growth(samples, warmup_s=25)


@pytest.mark.slow
def test_a_short_soak_has_no_errors_and_bounded_memory(tmp_path, klue_dir, kornli_dir, kcbert):
    # soak() stores the model under tmp_path/bentoml: the store this test's BentoML is pinned to
    data = {"klue": str(klue_dir), "kornli": str(kornli_dir)}
    # The worker's RSS rises for its first tens of thousands of answers (about 4 MB/s at 800
    # req/s on 2 cores, native memory) and then holds: growth is counted after a minute.
    result = soak(tmp_path, duration_s=90, clients=8, kcbert=kcbert, warmup_s=60, **data)
    assert result["requests"] > 300, result
    assert result["errors"] == 0, result
    assert result["server_alive"], result
    assert result["rss_growth"] < 0.10, result
