"""The feedback store on a real PostgreSQL server (team mode's database), started by the
test on loopback: corrections stored by concurrent writers, none lost, reviewed, exported."""

from __future__ import annotations

import os
import threading

import pytest

from devtools.team import TeamStack
from klue_nli.data.feedback import FeedbackStore


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    stack = TeamStack(tmp_path_factory.mktemp("pg")).start_postgres(dict(os.environ))
    yield stack
    stack.stop()


def test_postgres_keeps_every_acknowledged_correction(postgres, tmp_path):
    store = FeedbackStore(postgres.pg_url("postgres"))
    assert store.engine.dialect.name == "postgresql"
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
    assert {r["id"] for r in store.rows()} == set(acknowledged) and len(acknowledged) == 200
    assert store.review(acknowledged[:10], "accepted") == 10
    assert store.counts() == {"pending": 190, "accepted": 10, "rejected": 0}
    assert store.export(tmp_path / "accepted.jsonl") == 10
    assert postgres.password not in store.where  # what error lines may show
