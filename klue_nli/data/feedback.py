"""Feedback on the served model's answers: a pair, the label a user says is right, the answer
it corrects. Stored through SQLAlchemy in a real database: SQLite in WAL mode at a path by
default, PostgreSQL in team mode (one URL). A row is acknowledged only once its transaction
committed; nothing leaves the store unreviewed: `export` writes the accepted pairs only.

    klue-nli feedback list | accept | reject | export
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from klue_nli.core.errors import DataError, UserError
from klue_nli.core.io import atomic_write_text
from klue_nli.core.params import Params
from klue_nli.data import kornli
from klue_nli.data.klue import Example, read_split, split_filename
from klue_nli.data.overlap import NearDuplicates

STATUSES = ("pending", "accepted", "rejected")
# the stores whose INSERT ... ON CONFLICT DO NOTHING the rate limit uses
_upsert_dialects = {"sqlite": sqlite, "postgresql": postgresql}
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
# POST /feedback's per-client limit, kept in the store so that every worker of every service
# sharing it counts the same requests: one row per client key, the time (Unix seconds) at
# which its next request is due under the generic cell rate algorithm, pruned once past.
RATE = Table(
    "feedback_rate",
    metadata,
    Column("client", String(64), primary_key=True),
    Column("due", Float, nullable=False, index=True),
)


class StoreUnavailable(UserError):
    """The database cannot be reached or written now (the service answers 503)."""


class StoreFull(StoreUnavailable):
    """A cap on stored corrections is reached (feedback.max_pending, max_rows_per_hour): the
    service answers 503 with Retry-After, so one client cannot fill the review queue."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# The store's URL from the environment (a container's volume, a team's database, a test's
# scratch file): a SQLAlchemy URL, as feedback.database_url.
STORE_ENV = "KLUE_NLI_FEEDBACK_URL"


def store_url(params: Params, environ: Mapping[str, str] = os.environ) -> str:
    """The one store every reader and writer opens (the service, `klue-nli feedback`, the
    flow's export): KLUE_NLI_FEEDBACK_URL when set, else `feedback.database_url` (team mode:
    postgresql://...), else SQLite at paths.feedback_store."""
    return (
        environ.get(STORE_ENV)
        or params.feedback.database_url
        or sqlite_url(params.paths.feedback_store)
    )


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path)}"


def open_store(params: Params) -> FeedbackStore:
    """The store `store_url` names, opened (StoreUnavailable, naming it, when it cannot be)."""
    return FeedbackStore(store_url(params))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: readers never block the writer, and a commit survives a killed process once
    # fsync'd (synchronous=FULL, so an acknowledged row is on disk, not only in the log).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")  # writers queue instead of failing at once
    cursor.close()


def _private_file(path: Path) -> None:
    """The SQLite file, created readable by its owner only (0600) before SQLite opens it (one
    an earlier version left readable made so too): it holds what users typed. SQLite creates
    its -wal and -shm files with the database's mode."""
    if str(path) == ":memory:":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Only a missing file is created: closing any descriptor of a database file drops every
    # POSIX lock this process holds on it (SQLite's own connections' locks included), so an
    # existing one is never opened here, only its mode set.
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and file.stat().st_uid == os.getuid():
            file.chmod(0o600)


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
                _private_file(Path(self.engine.url.database))
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
        caps: tuple[int, int] | None = None,
    ) -> int:
        """Store one correction; its id once committed. `caps`: (most pending rows, most rows
        stored in the last hour), checked in the same transaction: StoreFull past either."""
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
                if caps is not None:
                    _check_caps(conn, *caps, now=row["created_at"])
                return int(conn.execute(insert(FEEDBACK).values(**row)).inserted_primary_key[0])
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"feedback store {self.where}: {_reason(exc)}") from None

    def take(self, client: str, per_minute: int, now: float | None = None) -> float:
        """One request from `client` under a limit of `per_minute` a minute (all of them at
        once, then one every 60 / per_minute s): 0 when it may go ahead, else the seconds
        until one may. One indexed row per client, updated by one conditional UPDATE, so
        concurrent workers never both spend the last place. StoreUnavailable when the store
        cannot answer."""
        now = time.time() if now is None else now
        interval, burst = 60.0 / per_minute, 60.0
        try:
            with self.engine.begin() as conn:
                if _spend(conn, client, now, interval, burst):
                    return 0.0
                due = conn.execute(select(RATE.c.due).where(RATE.c.client == client)).scalar()
                if due is not None:
                    return max(due + interval - burst - now, 0.001)
                # a client not seen since its row lapsed: lapsed rows go, and its own is made
                # (a worker that made it first is not overwritten: spend from that one)
                conn.execute(delete(RATE).where(RATE.c.due < now))
                dialect = _upsert_dialects[self.engine.dialect.name]
                conn.execute(
                    dialect.insert(RATE).values(client=client, due=now).on_conflict_do_nothing()
                )
                return 0.0 if _spend(conn, client, now, interval, burst) else interval
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
        """Set the status of these rows (accepted, rejected), all of them or none: an id the
        store lacks changes nothing and is named. How many there were."""
        ids = sorted(set(ids))
        status = _status(status)
        with self.engine.begin() as conn:
            known = set(conn.execute(select(FEEDBACK.c.id).where(FEEDBACK.c.id.in_(ids))).scalars())
            missing = [i for i in ids if i not in known]
            if missing:  # raised inside the transaction: it rolls back, nothing is written
                raise UserError(f"no feedback with id {', '.join(map(str, missing))}")
            query = (
                update(FEEDBACK)
                .where(FEEDBACK.c.id.in_(ids))
                .values(status=status, reviewed_at=datetime.now(UTC))
            )
            return conn.execute(query).rowcount

    def export(self, dest: str | Path, leave_out: NearDuplicates | None = None) -> dict:
        """The accepted pairs as JSON lines (by id), written atomically, but for those whose
        premise `leave_out` matches; the counts: {"pairs": written, "left_out": {set: n}}.
        The accepted rows are read once, in one transaction, so the counts and the file
        describe the same rows even while reviews go on."""
        with self.engine.begin() as conn:
            query = select(FEEDBACK).where(FEEDBACK.c.status == "accepted")
            rows = [dict(r._mapping) for r in conn.execute(query.order_by(FEEDBACK.c.id))]
        lines, left_out = [], {}
        for r in rows:
            matched = leave_out.match(r["premise"]) if leave_out is not None else None
            if matched is not None:
                left_out[matched] = left_out.get(matched, 0) + 1
                continue
            lines.append(_export_line(r))
        counts = {"pairs": len(lines), "left_out": dict(sorted(left_out.items()))}
        if leave_out is not None:
            counts["near_duplicate_threshold"] = leave_out.threshold
        # a header first: the file is never empty (DVC warns about an empty dependency), and a
        # reader sees what it holds and what it left out
        header = json.dumps({"export": HEADER, **counts}, sort_keys=True)
        atomic_write_text(dest, "".join(f"{line}\n" for line in [header, *lines]))
        return counts


def _export_line(r: dict[str, Any]) -> str:
    return json.dumps(
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


def evaluation_premises(params: Params) -> dict[str, list[str]]:
    """The premises no training pair may copy: KLUE's dev file and the out-of-domain test
    (KorNLI's XNLI test), from the download stage's output."""
    raw = Path(params.paths.raw_dir)
    needed = [raw / split_filename("dev"), raw / kornli.kornli_filename("test")]
    for path in needed:
        if not path.is_file():
            raise DataError(f"{path}: not found; run `dvc repro download` before the export")
    return {
        "dev": [e.premise for e in read_split(raw, "dev")],
        "out_of_domain": [e.premise for e in kornli.read_kornli(raw, "test")],
    }


def export_accepted(store: FeedbackStore, params: Params) -> dict:
    """Export the accepted pairs to paths.feedback_pairs, leaving out every pair whose premise
    is a dev or out-of-domain test premise, or a near-duplicate of one (a page user may well
    correct an evaluation pair: trained on, it would inflate the score promotion compares).
    The counts, as the export's header holds them."""
    leave_out = NearDuplicates(evaluation_premises(params), params.data.near_duplicate_threshold)
    return store.export(params.paths.feedback_pairs, leave_out)


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


def _check_caps(conn, max_pending: int, max_per_hour: int, now: datetime) -> None:
    pending = conn.execute(
        select(func.count()).select_from(FEEDBACK).where(FEEDBACK.c.status == "pending")
    ).scalar_one()
    if pending >= max_pending:
        raise StoreFull(
            f"{pending} corrections wait for review (feedback.max_pending): review some first",
            3600,
        )
    hour_ago = now - timedelta(hours=1)
    recent = select(func.count(), func.min(FEEDBACK.c.created_at)).where(
        FEEDBACK.c.created_at >= hour_ago
    )
    count, oldest = conn.execute(recent).one()
    if count >= max_per_hour:
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)  # SQLite drops it
        wait = max(1, int((oldest + timedelta(hours=1) - now).total_seconds()) + 1)
        raise StoreFull(f"{count} corrections in the last hour (feedback.max_rows_per_hour)", wait)


def _spend(conn, client: str, now: float, interval: float, burst: float) -> bool:
    """Move the client's due time on by one interval where that keeps it within `burst` of
    now (it starts from now when it has lapsed): whether there was a row to move."""
    start = case((RATE.c.due > now, RATE.c.due), else_=now)
    query = (
        update(RATE)
        # within a microsecond: n intervals of 60 / n seconds add up to 60 and a hair over
        .where(RATE.c.client == client, start + interval - now <= burst + 1e-6)
        .values(due=start + interval)
    )
    return conn.execute(query).rowcount == 1


def _reason(exc: Exception) -> str:
    """The driver's own message, first line (no SQL, no parameters: they hold user text)."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
