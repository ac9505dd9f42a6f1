"""The feedback store on both of its databases: SQLite in WAL mode (one machine) and a real
PostgreSQL server (team mode), started by the test on loopback. Corrections stored by
concurrent writers, none lost, reviewed, exported."""

from __future__ import annotations

import os
import threading

import pytest

from devtools.team import TeamStack
from klue_nli.data.feedback import FeedbackStore, sqlite_url


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    stack = TeamStack(tmp_path_factory.mktemp("pg")).start_postgres(dict(os.environ))
    yield stack
    stack.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> tuple[str, str, str | None]:
    """(dialect, URL, the password the URL holds, if any)."""
    if request.param == "sqlite":
        return "sqlite", sqlite_url(tmp_path / "fb" / "feedback.db"), None
    stack = request.getfixturevalue("postgres")
    return "postgresql", stack.pg_url("postgres"), stack.password


def test_concurrent_writers_lose_nothing(database, tmp_path):
    dialect, url, password = database
    store = FeedbackStore(url)
    assert store.engine.dialect.name == dialect
    acknowledged: list[int] = []
    lock = threading.Lock()

    def post(worker: int) -> None:
        for i in range(25):
            row_id = store.add(f"전제 {worker}-{i}", "가설", "neutral", answered="entailment")
            with lock:
                acknowledged.append(row_id)

    threads = [threading.Thread(target=post, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acknowledged) == 200 == len(set(acknowledged))
    assert {r["id"] for r in store.rows()} == set(acknowledged)
    assert store.review(acknowledged[:10], "accepted") == 10
    assert store.counts() == {"pending": 190, "accepted": 10, "rejected": 0}
    assert store.export(tmp_path / "accepted.jsonl") == {"pairs": 10, "left_out": {}}
    if password:
        assert password not in store.where  # what error lines may show
