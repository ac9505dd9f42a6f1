"""The feedback store (klue_nli/data/feedback.py) on a real SQLite database in WAL mode:
corrections stored and counted, reviewed, exported (accepted ones only, never a KLUE dev
premise), read back as training pairs; an unreachable store is one line. Concurrent writers,
on SQLite and PostgreSQL alike: tests/e2e/test_feedback_stores.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import text

from klue_nli.core.errors import DataError, UserError
from klue_nli.data.feedback import (
    SOURCE,
    FeedbackStore,
    StoreUnavailable,
    export_accepted,
    read_export,
    store_url,
)
from klue_nli.data.klue import split_filename
from tests.conftest import default_params, write_params

LABELS = ("entailment", "contradiction", "neutral")


@pytest.fixture
def store(tmp_path) -> FeedbackStore:
    return FeedbackStore(store_url(None, str(tmp_path / "fb" / "feedback.db")))


def _add(store: FeedbackStore, i: int, label: str = "neutral", premise: str | None = None) -> int:
    return store.add(
        premise or f"전제 {i}",
        f"가설 {i}",
        label,
        answer_id=f"a{i}",
        answered="entailment",
        model_version="3",
        note=None,
    )


def test_a_correction_is_stored_with_what_it_corrects_and_waits_for_review(store):
    row_id = _add(store, 1)
    [row] = store.rows()
    assert row["id"] == row_id and row["status"] == "pending"
    assert (row["premise"], row["label"], row["answered"], row["model_version"]) == (
        "전제 1", "neutral", "entailment", "3",
    )  # fmt: skip
    assert row["created_at"] is not None and row["reviewed_at"] is None
    assert store.counts() == {"pending": 1, "accepted": 0, "rejected": 0}


def test_sqlite_runs_in_wal_mode_with_full_sync(store):
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_review_sets_the_status_and_an_unknown_id_is_named(store):
    ids = [_add(store, i) for i in range(4)]
    assert store.review(ids[:2], "accepted") == 2
    assert store.review([ids[2]], "rejected") == 1
    assert store.counts() == {"pending": 1, "accepted": 2, "rejected": 1}
    assert all(r["reviewed_at"] is not None for r in store.rows("accepted"))
    with pytest.raises(UserError, match="no feedback with id 999"):
        store.review([ids[3], 999], "accepted")
    with pytest.raises(UserError, match="status 'maybe'"):
        store.review([ids[3]], "maybe")


def test_only_accepted_pairs_leave_the_store_and_never_a_dev_premise(store, workdir):
    dev_premise = "개발 세트의 전제"
    ids = [_add(store, i, label) for i, label in enumerate(LABELS)]
    dev_id = _add(store, 9, "contradiction", premise=dev_premise)
    store.review([ids[0], ids[1], dev_id], "accepted")
    store.review([ids[2]], "rejected")
    raw = workdir / "raw"
    raw.mkdir()
    record = {"guid": "d-1", "premise": dev_premise, "hypothesis": "h", "gold_label": "neutral"}
    (raw / split_filename("dev")).write_text(json.dumps([record], ensure_ascii=False))
    params = default_params(paths={"raw_dir": "raw", "feedback_pairs": "out/accepted.jsonl"})
    assert export_accepted(store, params) == (2, 1)
    lines = (workdir / "out" / "accepted.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"export": "klue-nli feedback", "pairs": 2}
    exported = [json.loads(line) for line in lines[1:]]
    assert [e["feedback_id"] for e in exported] == ids[:2]
    assert exported[0]["corrects"] == {"model_version": "3", "answer": "entailment"}
    examples = read_export(workdir / "out" / "accepted.jsonl", LABELS)
    assert [(e.source, e.label) for e in examples] == [
        (SOURCE, "entailment"),
        (SOURCE, "contradiction"),
    ]
    assert examples[0].guid == f"feedback-{ids[0]}"


def test_the_export_needs_the_dev_file_to_keep_dev_out(store, workdir):
    params = default_params(paths={"raw_dir": "absent"})
    with pytest.raises(DataError, match="run `dvc repro download` before the export"):
        export_accepted(store, params)


def test_an_export_line_that_is_not_feedback_is_one_line(tmp_path):
    path = tmp_path / "accepted.jsonl"
    assert read_export(path, LABELS) == []  # no export yet: no extra pairs
    path.write_text('{"feedback_id": 1, "premise": "p", "hypothesis": "h", "label": "maybe"}\n')
    with pytest.raises(DataError, match=r"accepted.jsonl:1: label 'maybe'"):
        read_export(path, LABELS)
    path.write_text("not json\n")
    with pytest.raises(DataError, match=r"accepted.jsonl:1: not an exported feedback line"):
        read_export(path, LABELS)


def test_an_unreachable_store_is_one_line_without_the_password(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable) as err:
        FeedbackStore(f"sqlite:///{blocker}/sub/feedback.db")
    assert "\n" not in str(err.value)
    with pytest.raises(StoreUnavailable) as err:
        FeedbackStore("postgresql://klue:s3cret@127.0.0.1:1/feedback")
    assert "s3cret" not in str(err.value) and "***" in str(err.value)


def _cli(workdir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "klue_nli.cli", "feedback", *args, "--params", "params.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_lists_reviews_and_exports(workdir):
    params = default_params()
    write_params(workdir / "params.yaml", params)
    store = FeedbackStore(store_url(None, params.paths.feedback_store))
    ids = [_add(store, i) for i in range(3)]
    raw = workdir / params.paths.raw_dir
    raw.mkdir(parents=True)
    dev = [{"guid": "d", "premise": "dev", "hypothesis": "h", "gold_label": "neutral"}]
    (raw / split_filename("dev")).write_text(json.dumps(dev))

    listed = _cli(workdir, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == ids
    assert "3 pending, 0 accepted, 0 rejected" in listed.stderr
    assert _cli(workdir, "accept", str(ids[0]), str(ids[2])).stdout.strip() == "accepted 2"
    assert _cli(workdir, "reject", str(ids[1])).stdout.strip() == "rejected 1"
    exported = _cli(workdir, "export")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == f"{params.paths.feedback_pairs}: 2 accepted pair(s)"
    lines = (workdir / params.paths.feedback_pairs).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["feedback_id"] for line in lines[1:]] == [ids[0], ids[2]]
    missing = _cli(workdir, "accept", "999")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "klue-nli: error: no feedback with id 999"
