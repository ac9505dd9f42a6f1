"""The service's corrections open the feedback store once, however many worker threads ask
for it at the same moment (service/feedback.py)."""

from __future__ import annotations

import threading
import time

from klue_nli.data.feedback import STORE_ENV, FeedbackStore
from service import feedback
from tests.conftest import default_params


def test_threads_committing_at_once_open_the_store_once(tmp_path, monkeypatch):
    opened: list[str] = []

    class Counted(FeedbackStore):  # the real store, counted as it opens
        def __init__(self, url: str) -> None:
            opened.append(url)
            time.sleep(0.05)  # as opening a database takes a while
            super().__init__(url)

    monkeypatch.setattr(feedback, "FeedbackStore", Counted)
    monkeypatch.setenv(STORE_ENV, f"sqlite:///{tmp_path / 'feedback.db'}")
    params = default_params()
    corrections = feedback.Corrections(
        params, feedback.RecentAnswers(10), feedback.LazyStore(params)
    )
    stores: list[FeedbackStore] = []

    def commit() -> None:
        stores.append(corrections.store.open())

    threads = [threading.Thread(target=commit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(opened) == 1 and len({id(s) for s in stores}) == 1
