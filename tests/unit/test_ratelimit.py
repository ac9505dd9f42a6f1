"""POST /feedback's per-client limit (service/ratelimit.py), counted in the feedback store:
one limit for every worker sharing the store, atomic under concurrent workers, one row per
client, an IPv6 client keyed by its /64, and a 503 when the store cannot count."""

from __future__ import annotations

import multiprocessing

import pytest
from sqlalchemy import func, select

from klue_nli.data.feedback import RATE, STORE_ENV, FeedbackStore, sqlite_url
from service.feedback import LazyStore
from service.ratelimit import RateLimit, client_key
from tests.conftest import default_params
from tests.helpers import asgi_call, ok_app


def limit(url: str, per_minute: int, monkeypatch: pytest.MonkeyPatch) -> RateLimit:
    """The middleware as one worker builds it: its own engine on the store the URL names."""
    monkeypatch.setenv(STORE_ENV, url)
    return RateLimit(ok_app, "/feedback", per_minute=per_minute, store=LazyStore(default_params()))


def post(app: RateLimit, client: str) -> int:
    return asgi_call(app, "/feedback", client=(client, 5))[0]


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("unix-socket", "unix-socket"),
    ],
)
def test_an_ipv6_client_is_one_bucket_per_64(address, key):
    assert client_key(address) == key


def test_two_workers_sharing_a_store_share_one_limit(tmp_path, monkeypatch):
    url = sqlite_url(tmp_path / "store.db")
    first, second = limit(url, 3, monkeypatch), limit(url, 3, monkeypatch)
    statuses = [post(first, "203.0.113.9"), post(second, "203.0.113.9"), post(first, "203.0.113.9")]
    assert statuses == [200, 200, 200]
    status, headers, body = asgi_call(second, "/feedback", client=("203.0.113.9", 5))
    assert status == 429 and int(headers[b"retry-after"]) == 20, body  # 60 / 3 s to the next
    assert post(second, "203.0.113.10") == 200  # another client is not held


def test_a_client_cannot_pick_a_fresh_bucket_within_its_64(tmp_path, monkeypatch):
    app = limit(sqlite_url(tmp_path / "store.db"), 2, monkeypatch)
    assert [post(app, f"2001:db8::{i}") for i in range(1, 4)] == [200, 200, 429]
    assert post(app, "2001:db8:0:1::1") == 200  # another /64


def _spend(url: str, per_minute: int, tries: int, now: float, out) -> None:
    store = FeedbackStore(url)
    out.put(sum(store.take("198.51.100.7", per_minute, now=now) == 0 for _ in range(tries)))


def test_concurrent_workers_never_both_spend_the_last_place(tmp_path):
    url = sqlite_url(tmp_path / "store.db")
    FeedbackStore(url)  # the tables, before the workers race to use them
    out = multiprocessing.get_context("fork").Queue()
    workers = [
        multiprocessing.get_context("fork").Process(target=_spend, args=(url, 25, 20, 1e9, out))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sum(out.get(timeout=5) for _ in workers) == 25  # of 60 tries at one instant


def test_the_limit_refills_over_the_minute_and_keeps_one_row_per_live_client(tmp_path):
    store = FeedbackStore(sqlite_url(tmp_path / "store.db"))
    assert [store.take("a", 2, now=0.0) == 0 for _ in range(3)] == [True, True, False]
    assert store.take("a", 2, now=29.0) == pytest.approx(1.0)  # one place every 30 s
    assert store.take("a", 2, now=30.0) == 0
    for i in range(500):
        store.take(f"10.0.{i >> 8}.{i & 255}", 2, now=0.0)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RATE)).scalar() == 501
    store.take("new", 2, now=120.0)  # the others' rows have lapsed and go
    with store.engine.connect() as conn:
        assert conn.execute(select(RATE.c.client)).scalars().all() == ["new"]


def test_with_the_store_out_of_reach_the_route_is_a_503(tmp_path, monkeypatch):
    app = limit(sqlite_url(tmp_path / "no-such-folder-file" / "x" / "store.db"), 2, monkeypatch)
    (tmp_path / "no-such-folder-file").write_text("a file where the folder should be")
    status, _, body = asgi_call(app, "/feedback", client=("203.0.113.9", 5))
    assert status == 503 and b"feedback store is unavailable" in body
