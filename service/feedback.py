"""POST /feedback's work behind the contract: the answers a worker remembers so that a
correction can name one by its id, and the store a correction is committed to.

A correction is acknowledged (200) only once its row is committed; with the store out of
reach it is a 503 and the model's routes answer as usual. Text is never logged.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from bentoml.exceptions import NotFound, ServiceUnavailable

from klue_nli.core.errors import UserError
from klue_nli.core.params import Params
from klue_nli.data.feedback import STORE_ENV, FeedbackStore, StoreFull, store_url
from service.errors import FEEDBACK_ERRORS

__all__ = ["STORE_ENV", "Corrections", "Given", "LazyStore", "RecentAnswers"]


@dataclass(frozen=True)
class Given:
    """An answer as it was given: what a correction by answer_id refers to."""

    premise: str
    hypothesis: str
    label: str
    model_version: str


class RecentAnswers:
    """The last `size` answers of this worker, by answer id (oldest forgotten first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._answers: OrderedDict[str, Given] = OrderedDict()

    def remember(self, given: Given) -> str:
        answer_id = uuid.uuid4().hex
        self._answers[answer_id] = given
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)
        return answer_id

    def get(self, answer_id: str) -> Given | None:
        return self._answers.get(answer_id)


class QueueFull(ServiceUnavailable):
    """503 with Retry-After: a cap on stored corrections is reached (the store is up)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LazyStore:
    """The feedback store `store_url` names, opened at first use (and again after a failure),
    so a store that is down when the service starts only delays /feedback."""

    def __init__(self, params: Params) -> None:
        self.url = store_url(params)  # the store `klue-nli feedback` and the flow read
        self._store: FeedbackStore | None = None
        # the store is used from worker threads (asyncio.to_thread): one opens it, the
        # others wait for it rather than each creating an engine of its own
        self._opening = threading.Lock()

    def open(self) -> FeedbackStore:
        with self._opening:
            if self._store is None:
                self._store = FeedbackStore(self.url)
            return self._store

    def forget(self) -> None:
        """After a failure: open it again next time."""
        with self._opening:
            self._store = None


class Corrections:
    """Commits corrections to the feedback store."""

    def __init__(self, params: Params, recent: RecentAnswers, store: LazyStore) -> None:
        # the one store of this process, shared with the rate limit: two engines on one
        # SQLite file in one process need not be
        self.store = store
        self.caps = (params.feedback.max_pending, params.feedback.max_rows_per_hour)
        self.recent = recent

    def _add(self, label: str, given: Given, answer_id: str | None, note: str | None) -> int:
        answered = given.label or None
        return self.store.open().add(
            given.premise,
            given.hypothesis,
            label,
            answer_id=answer_id,
            answered=answered,
            model_version=given.model_version or None,
            note=note,
            caps=self.caps,
        )

    async def submit(
        self,
        label: str,
        answer_id: str | None,
        premise: str | None,
        hypothesis: str | None,
        note: str | None,
    ) -> int:
        """The stored row's id; NotFound for an answer id this worker no longer holds when no
        pair came with it; ServiceUnavailable when the store cannot commit."""
        given = self.recent.get(answer_id) if answer_id else None
        if given is None and premise is None:
            raise NotFound(
                f"answer_id {answer_id} is unknown (the service keeps its last "
                f"{self.recent.size} answers): send the premise and hypothesis with the label"
            )
        if premise is not None and (
            given is None or (premise, hypothesis) != (given.premise, given.hypothesis)
        ):
            given = Given(premise, hypothesis or "", "", "")  # a pair of the user's own
        try:  # SQLAlchemy blocks: the event loop keeps serving meanwhile
            return await asyncio.to_thread(self._add, label, given, answer_id, note)
        except StoreFull as full:
            raise QueueFull(str(full), full.retry_after_s) from None
        except UserError:  # unreachable, refusing writes, or its driver missing
            self.store.forget()
            raise ServiceUnavailable(FEEDBACK_ERRORS[503]) from None
