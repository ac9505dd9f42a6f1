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
    sqlite_url,
    store_url,
)
from klue_nli.data.klue import split_filename
from klue_nli.data.kornli import kornli_filename
from tests.conftest import default_params, write_params

LABELS = ("entailment", "contradiction", "neutral")


@pytest.fixture
def store(tmp_path) -> FeedbackStore:
    return FeedbackStore(sqlite_url(tmp_path / "fb" / "feedback.db"))


DEV_PREMISE = "오늘 회의는 오후 세 시에 본관 대회의실에서 열린다."
TEST_PREMISE = "그는 아침마다 공원을 한 바퀴 달리고 나서 출근한다."


def write_evaluation_files(raw) -> None:
    """A dev file and an out-of-domain test file, one premise each, as download writes them."""
    raw.mkdir(parents=True, exist_ok=True)
    record = {"guid": "d-1", "premise": DEV_PREMISE, "hypothesis": "h", "gold_label": "neutral"}
    (raw / split_filename("dev")).write_text(json.dumps([record], ensure_ascii=False))
    tsv = f"sentence1\tsentence2\tgold_label\n{TEST_PREMISE}\th\tneutral\n"
    (raw / kornli_filename("test")).write_text(tsv, encoding="utf-8")


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
    # all or nothing: the known id of a refused review is still waiting
    assert store.counts() == {"pending": 1, "accepted": 2, "rejected": 1}
    assert [r["id"] for r in store.rows("pending")] == [ids[3]]


def test_only_accepted_pairs_leave_the_store_and_never_an_evaluation_premise(store, workdir):
    ids = [_add(store, i, label) for i, label in enumerate(LABELS)]
    copies = [
        _add(store, 10, premise=" " + DEV_PREMISE),  # a leading space
        _add(store, 11, premise=DEV_PREMISE.replace(" ", "  ", 2)),  # doubled spaces
        _add(store, 12, premise=DEV_PREMISE[:-1] + "．"),  # a full-width period
        _add(store, 13, premise=DEV_PREMISE.replace("세", "네")),  # one edited character
        _add(store, 14, premise=TEST_PREMISE + "  "),  # the out-of-domain test's, spaced
    ]
    store.review([ids[0], ids[1], *copies], "accepted")
    store.review([ids[2]], "rejected")
    write_evaluation_files(workdir / "raw")
    params = default_params(paths={"raw_dir": "raw", "feedback_pairs": "out/accepted.jsonl"})
    left_out = {"dev": 4, "out_of_domain": 1}
    threshold = params.data.near_duplicate_threshold
    counts = {"pairs": 2, "left_out": left_out, "near_duplicate_threshold": threshold}
    assert export_accepted(store, params) == counts
    lines = (workdir / "out" / "accepted.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"export": "klue-nli feedback", **counts}
    exported = [json.loads(line) for line in lines[1:]]
    assert [e["feedback_id"] for e in exported] == ids[:2]
    assert exported[0]["corrects"] == {"model_version": "3", "answer": "entailment"}
    examples = read_export(workdir / "out" / "accepted.jsonl", LABELS)
    assert [(e.source, e.label) for e in examples] == [
        (SOURCE, "entailment"),
        (SOURCE, "contradiction"),
    ]
    assert examples[0].guid == f"feedback-{ids[0]}"


def test_every_reader_opens_the_store_the_environment_names(tmp_path):
    """The service, `klue-nli feedback` and the flow all call store_url: the variable wins,
    then feedback.database_url, then the SQLite file."""
    params = default_params(paths={"feedback_store": "fb/feedback.db"})
    assert store_url(params, {}) == "sqlite:///fb/feedback.db"
    team = default_params(feedback={"database_url": "postgresql://u@db/feedback"})
    assert store_url(team, {}) == "postgresql://u@db/feedback"
    env = {"KLUE_NLI_FEEDBACK_URL": f"sqlite:///{tmp_path}/other.db"}
    assert store_url(team, env) == store_url(params, env) == env["KLUE_NLI_FEEDBACK_URL"]


def test_the_export_needs_the_evaluation_files_to_keep_them_out(store, workdir):
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


def test_the_cli_shows_whole_texts_on_request(workdir):
    params = default_params()
    write_params(workdir / "params.yaml", params)
    store = FeedbackStore(store_url(params, {}))
    premise = "비가 와서 길이 젖었고, 사람들은 우산을 쓰고 천천히 걸었다. " * 3  # > 40 characters
    _add(store, 0, premise=premise)
    short = _cli(workdir, "list")
    assert short.returncode == 0 and premise not in short.stdout
    assert repr(premise[:40]) in short.stdout
    full = _cli(workdir, "list", "--full")
    assert full.returncode == 0, full.stderr
    assert f"premise: {premise!r}" in full.stdout and "hypothesis: '가설 0'" in full.stdout


def test_the_cli_lists_reviews_and_exports(workdir):
    params = default_params()
    write_params(workdir / "params.yaml", params)
    store = FeedbackStore(store_url(params, {}))
    ids = [_add(store, i) for i in range(3)]
    write_evaluation_files(workdir / params.paths.raw_dir)

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
