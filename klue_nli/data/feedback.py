"""Feedback on the served model's answers: a pair, the label a user says is right, the answer
it corrects. Stored through SQLAlchemy in a real database: SQLite in WAL mode at a path by
default, PostgreSQL in team mode (one URL). A row is acknowledged only once its transaction
committed; nothing leaves the store unreviewed: `export` writes the accepted pairs only.

    klue-nli feedback list | accept | reject | export
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from klue_nli.core.errors import DataError, UserError
from klue_nli.core.io import atomic_write_text
from klue_nli.core.params import Params
from klue_nli.data.klue import Example, read_split, split_filename

STATUSES = ("pending", "accepted", "rejected")
SOURCE = "feedback"  # the pairs' source in featurize's meta.json
HEADER = "klue-nli feedback"  # the export's first line: {"export": HEADER, "pairs": n}

metadata = MetaData()
FEEDBACK = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("answer_id", String(64), nullable=True, index=True),
    Column("premise", Text, nullable=False),
    Column("hypothesis", Text, nullable=False),
    Column("label", String(16), nullable=False),  # what the user says is right
    Column("answered", String(16), nullable=True),  # what the model said
    Column("model_version", String(64), nullable=True),
    Column("note", Text, nullable=True),
    Column("status", String(16), nullable=False, default="pending", index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=True),
)


class StoreUnavailable(UserError):
    """The database cannot be reached or written now (the service answers 503)."""


def store_url(database_url: str | None, sqlite_path: str) -> str:
    """`feedback.database_url` when set (team mode: postgresql://...), else SQLite at
    paths.feedback_store."""
    return database_url or f"sqlite:///{Path(sqlite_path)}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: readers never block the writer, and a commit survives a killed process once
    # fsync'd (synchronous=FULL, so an acknowledged row is on disk, not only in the log).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")  # writers queue instead of failing at once
    cursor.close()


class FeedbackStore:
    """The feedback table behind one engine. Every write is one transaction."""

    def __init__(self, url: str) -> None:
        # postgresql:// through psycopg2, the driver the `team` extra pins (SQLAlchemy's
        # default for the bare scheme is another one)
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
        self.url = url
        try:
            self.engine: Engine = create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise UserError(
                f"feedback.database_url needs the {exc.name} driver: pip install "
                "'klue-nli-pipeline[team]'"
            ) from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            if self.engine.dialect.name == "sqlite" and self.engine.url.database:
                Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
            metadata.create_all(self.engine)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"feedback store {self.where}: {_reason(exc)}") from None

    @property
    def where(self) -> str:
        """The URL without its password (what error lines may show)."""
        return self.engine.url.render_as_string(hide_password=True)

    def add(
        self,
        premise: str,
        hypothesis: str,
        label: str,
        *,
        answer_id: str | None = None,
        answered: str | None = None,
        model_version: str | None = None,
        note: str | None = None,
    ) -> int:
        """Store one correction; its id once committed."""
        row = {
            "premise": premise,
            "hypothesis": hypothesis,
            "label": label,
            "answer_id": answer_id,
            "answered": answered,
            "model_version": model_version,
            "note": note,
            "status": "pending",
            "created_at": datetime.now(UTC),
        }
        try:
            with self.engine.begin() as conn:
                return int(conn.execute(insert(FEEDBACK).values(**row)).inserted_primary_key[0])
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"feedback store {self.where}: {_reason(exc)}") from None

    def rows(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows by id, optionally of one status."""
        query = select(FEEDBACK).order_by(FEEDBACK.c.id)
        if status is not None:
            query = query.where(FEEDBACK.c.status == _status(status))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        query = select(FEEDBACK.c.status, func.count()).group_by(FEEDBACK.c.status)
        with self.engine.connect() as conn:
            found = dict(conn.execute(query).all())
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def review(self, ids: Iterable[int], status: str) -> int:
        """Set the status of these rows (accepted, rejected); how many there were."""
        ids = sorted(set(ids))
        query = (
            update(FEEDBACK)
            .where(FEEDBACK.c.id.in_(ids))
            .values(status=_status(status), reviewed_at=datetime.now(UTC))
        )
        with self.engine.begin() as conn:
            changed = conn.execute(query).rowcount
        if changed != len(ids):
            known = {r["id"] for r in self.rows()}
            missing = [i for i in ids if i not in known]
            raise UserError(f"no feedback with id {', '.join(map(str, missing))}")
        return changed

    def export(self, dest: str | Path, exclude_premises: frozenset[str] = frozenset()) -> int:
        """The accepted pairs as JSON lines (by id), written atomically, but for those whose
        premise is in `exclude_premises`; how many were written."""
        lines = [
            json.dumps(
                {
                    "feedback_id": r["id"],
                    "premise": r["premise"],
                    "hypothesis": r["hypothesis"],
                    "label": r["label"],
                    "corrects": {"model_version": r["model_version"], "answer": r["answered"]},
                },
                ensure_ascii=False,
                sort_keys=True,
            )
            for r in self.rows("accepted")
            if r["premise"] not in exclude_premises
        ]
        # a header first: the file is never empty (DVC warns about an empty dependency), and a
        # reader sees what it holds
        header = json.dumps({"export": HEADER, "pairs": len(lines)})
        atomic_write_text(dest, "".join(f"{line}\n" for line in [header, *lines]))
        return len(lines)


def export_accepted(store: FeedbackStore, params: Params) -> tuple[int, int]:
    """Export the accepted pairs to paths.feedback_pairs, leaving out every pair whose premise
    KLUE's dev file holds (a page user may well correct a dev pair: trained on, it would
    inflate the dev score promotion compares). (written, left out)."""
    raw = Path(params.paths.raw_dir) / split_filename("dev")
    if not raw.is_file():
        raise DataError(f"{raw}: not found; run `dvc repro download` before the export")
    dev = frozenset(e.premise for e in read_split(params.paths.raw_dir, "dev"))
    accepted = len(store.rows("accepted"))
    written = store.export(params.paths.feedback_pairs, dev)
    return written, accepted - written


def read_export(path: str | Path, labels: Iterable[str]) -> list[Example]:
    """An export's pairs as training examples of their own source (`feedback`), for
    featurize; none when there is no export. A label the model lacks stops with one line."""
    path, labels = Path(path), list(labels)
    if not path.is_file():
        return []
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if number == 1 and row.get("export") == HEADER:
                continue
            example = Example(
                f"{SOURCE}-{row['feedback_id']}",
                SOURCE,
                row["premise"],
                row["hypothesis"],
                row["label"],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path}:{number}: not an exported feedback line ({exc})") from None
        if example.label not in labels:
            raise DataError(f"{path}:{number}: label {example.label!r} is not one of {labels}")
        examples.append(example)
    return examples


def _status(status: str) -> str:
    if status not in STATUSES:
        raise UserError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return status


def _reason(exc: Exception) -> str:
    """The driver's own message, first line (no SQL, no parameters: they hold user text)."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
