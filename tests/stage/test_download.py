"""Download stage against a loopback HTTP server and a folder mirror: retries, verification,
atomic output."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from klue_nli.core.errors import DataError
from klue_nli.data.klue import parse_examples, split_filename
from klue_nli.data.kornli import SPLITS as KORNLI_SPLITS
from klue_nli.data.kornli import kornli_filename, parse_tsv
from stages import download as dl
from tests.helpers import LoopbackServer


def raw_files(workdir: Path) -> list[str]:
    raw = workdir / "data" / "raw"
    return sorted(p.name for p in raw.iterdir()) if raw.exists() else []


def test_git_blob_sha1_matches_git():
    # `printf 'hello\n' | git hash-object --stdin`
    assert dl.git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_folder_mirror_is_schema_checked_and_written(workdir, make_params, klue_dir):
    summary = dl.download(make_params())["klue"]
    assert summary["source"] == "mirror"
    assert raw_files(workdir) == sorted(
        [split_filename("dev"), split_filename("train"), *map(kornli_filename, KORNLI_SPLITS)]
    )
    for split in ("train", "dev"):
        data = (workdir / "data/raw" / split_filename(split)).read_bytes()
        assert data == (klue_dir / split_filename(split)).read_bytes()
        assert summary[split]["records"] == len(parse_examples(data, split))
    # no temp folders left behind
    assert [p.name for p in (workdir / "data").iterdir()] == ["raw"]


def test_http_mirror_retries_5xx_until_it_answers(workdir, make_params, loopback):
    name = split_filename("train")
    loopback.faults[name] = [503, 500]  # fails twice, then answers
    loopback.faults[split_filename("dev")] = ["truncate"]  # short body, then whole
    dl.download(make_params(data={"mirror": loopback.url}))
    assert loopback.hits[name] == 3
    assert loopback.hits[split_filename("dev")] == 2
    assert len(raw_files(workdir)) == 4  # both KLUE files and both KorNLI files


@pytest.mark.parametrize("fault", ["reset", "slow", "stall"])
def test_reset_or_silent_connections_are_retried_to_success(workdir, make_params, loopback, fault):
    """A TCP reset mid-body, or a server silent past data.timeout_s before or during the
    body: each attempt fails, the next one succeeds, and the written files are whole."""
    name = split_filename("train")
    loopback.stall_s = 1.5
    loopback.faults[name] = [fault]
    dl.download(make_params(data={"mirror": loopback.url, "timeout_s": 0.5, "backoff_s": 0.05}))
    assert loopback.hits[name] == 2
    data = (workdir / "data/raw" / name).read_bytes()
    assert data == (loopback.folder / name).read_bytes()


def test_a_server_that_stays_silent_is_a_clear_error_and_leaves_nothing(
    workdir, make_params, loopback
):
    loopback.stall_s = 1.0
    loopback.faults[split_filename("train")] = ["slow"] * 3
    params = make_params(
        data={"mirror": loopback.url, "timeout_s": 0.3, "retries": 2, "backoff_s": 0.05}
    )
    with pytest.raises(DataError, match=r"train.json: failed after 3 attempts \(last: .*Timeout"):
        dl.download(params)
    assert raw_files(workdir) == []
    assert not (workdir / "data").exists() or os.listdir(workdir / "data") == []


def test_gives_up_after_the_configured_retries_and_writes_nothing(workdir, make_params, loopback):
    loopback.faults[split_filename("dev")] = [502] * 5
    with pytest.raises(DataError, match=r"klue-nli-v1.1_dev.json: failed after 3 attempts"):
        dl.download(make_params(data={"mirror": loopback.url, "retries": 2}))
    assert raw_files(workdir) == []
    assert not (workdir / "data").exists() or os.listdir(workdir / "data") == []


def test_an_unreachable_official_source_names_the_mirror_to_set(workdir, make_params, loopback):
    loopback.faults[split_filename("train")] = [502] * 2
    params = make_params(data={"mirror": None, "base_url": loopback.url, "retries": 1})
    hint = r"failed after 2 attempts.*offline, set data.mirror \(KLUE_NLI_MIRROR"
    with pytest.raises(DataError, match=hint):
        dl.download(params)
    assert raw_files(workdir) == []


def test_tampered_official_file_fails_its_checksum(workdir, make_params, loopback, monkeypatch):
    train = loopback.folder / split_filename("train")
    good = dl.Checksums(sha256=hashlib.sha256(train.read_bytes()).hexdigest())
    monkeypatch.setitem(dl.OFFICIAL, "train", good)
    loopback.faults[split_filename("train")] = ["tamper"]
    params = make_params(data={"mirror": None, "base_url": loopback.url})
    with pytest.raises(DataError, match=r"klue-nli-v1.1_train.json: sha256 mismatch"):
        dl.download(params)
    assert raw_files(workdir) == []


def test_the_sample_is_not_accepted_as_the_official_release(workdir, make_params, loopback):
    # The shipped sample is a subset: as "official" it must fail verification, not pass.
    params = make_params(data={"mirror": None, "base_url": loopback.url})
    with pytest.raises(DataError, match="git blob SHA-1 mismatch"):
        dl.download(params)


def test_count_check_for_official_files(workdir, make_params, loopback, monkeypatch):
    for split in ("train", "dev"):
        data = (loopback.folder / split_filename(split)).read_bytes()
        monkeypatch.setitem(
            dl.OFFICIAL, split, dl.Checksums(git_blob_sha1=dl.git_blob_sha1(data), count=10)
        )
    with pytest.raises(DataError, match=r"records, expected 10"):
        dl.download(make_params(data={"mirror": None, "base_url": loopback.url}))


def test_schema_errors_name_the_file_and_record(tmp_path, workdir, make_params):
    mirror = tmp_path / "bad"
    mirror.mkdir()
    (mirror / split_filename("train")).write_text(
        '[{"premise": "a", "hypothesis": "b", "gold_label": "maybe"}]'
    )
    (mirror / split_filename("dev")).write_text("[]")
    with pytest.raises(DataError, match=r"train.json: record 0 has gold_label 'maybe'"):
        dl.download(make_params(data={"mirror": str(mirror)}))
    assert raw_files(workdir) == []


def test_missing_mirror_file_is_a_clear_error(tmp_path, workdir, make_params):
    with pytest.raises(DataError, match="not found"):
        dl.download(make_params(data={"mirror": f"file://{tmp_path}/nowhere"}))


def test_official_checksums_are_the_published_ones():
    assert dl.OFFICIAL["dev"].sha256 == (
        "0699db82be17766b26e199864e6260443e17ec6e91d1870e876419e388f245b1"
    )
    assert dl.OFFICIAL["train"].git_blob_sha1 == "a7903d15f09a3663d8f1d78e68d8d6c10dbd8618"
    assert dl.OFFICIAL["dev"].git_blob_sha1 == "db052b2459c68d1ec57dd1573bfe90a9bb3f8157"
    assert (dl.OFFICIAL["train"].count, dl.OFFICIAL["dev"].count) == (24_998, 3_000)


def test_a_429_waits_as_long_as_retry_after_asks(workdir, make_params, loopback):
    """backoff_s is 0.05 s here; the server asks for 1 s: the retry comes no sooner."""
    loopback.faults[split_filename("dev")] = [("retry-after", 1)]
    started = time.monotonic()
    dl.download(make_params(data={"mirror": loopback.url}))
    assert time.monotonic() - started >= 1.0
    assert loopback.hits[split_filename("dev")] == 2


@pytest.mark.parametrize(
    ("mirror", "message"),
    [
        (None, r"TooManyRedirects"),  # the loopback mirror redirecting to itself for ever
        ("http://[::1:bad/", r"not a URL this download can fetch"),
        ("http:///no-host/", r"InvalidURL: .*No host supplied"),
    ],
)
def test_what_no_retry_can_fix_fails_at_once(workdir, make_params, loopback, mirror, message):
    if mirror is None:
        loopback.faults[split_filename("train")] = ["redirect-loop"]
        mirror = loopback.url
    started = time.monotonic()
    with pytest.raises(DataError, match=message):
        dl.download(make_params(data={"mirror": mirror, "retries": 4, "backoff_s": 1.0}))
    assert time.monotonic() - started < 1.0  # no backoff: 1 + 2 + 4 + 8 s if retried
    assert raw_files(workdir) == []


@pytest.fixture
def kornli_server(kornli_dir):
    server = LoopbackServer(kornli_dir)
    server.start()
    yield server
    server.stop()


def test_kornli_as_released_passes_its_published_checksums_and_counts(
    workdir, make_params, kornli_server
):
    """The official route (no mirror) for KorNLI, served from a copy of the release: the
    published sha256, git blob SHA-1 and pair counts all hold, and the rows come out as
    the release's counts only with quoting off."""
    params = make_params(data={"kornli": {"mirror": None, "base_url": kornli_server.url}})
    summary = dl.download(params)["kornli"]
    assert summary["source"] == "official"
    assert {split: summary[split]["records"] for split in KORNLI_SPLITS} == {
        "dev": 2_490,
        "test": 5_010,
    }
    assert summary["test"]["sha256"] == dl.KORNLI_OFFICIAL["test"].sha256
    assert dl.KORNLI_OFFICIAL["dev"].git_blob_sha1 == "21305150d466aa35d42b14e1890b7dcd58084634"


def test_a_tampered_kornli_file_fails_and_leaves_nothing(workdir, make_params, kornli_server):
    kornli_server.faults[kornli_filename("test")] = ["tamper"]
    params = make_params(data={"kornli": {"mirror": None, "base_url": kornli_server.url}})
    with pytest.raises(DataError, match=r"xnli.test.ko.tsv: sha256 mismatch"):
        dl.download(params)
    assert raw_files(workdir) == []


def test_kornli_rows_are_read_with_quoting_off_and_checked():
    rows = 'sentence1\tsentence2\tgold_label\n그가 "안녕" 했다\t그는 말했다\tentailment\n'
    (example,) = parse_tsv(rows.encode(), "x.tsv")
    assert example.premise == '그가 "안녕" 했다' and example.source == "kornli-xnli"
    with pytest.raises(DataError, match=r"x.tsv: line 2 has gold_label 'maybe'"):
        parse_tsv(b"sentence1\tsentence2\tgold_label\na\tb\tmaybe\n", "x.tsv")
    with pytest.raises(DataError, match=r"x.tsv: the first line is"):
        parse_tsv(b"premise\thypothesis\tlabel\n", "x.tsv")
    with pytest.raises(DataError, match=r"x.tsv: line 2 has 2 fields"):
        parse_tsv(b"sentence1\tsentence2\tgold_label\na\tb\n", "x.tsv")
