"""Stage 1: download KLUE-NLI v1.1 train and dev, and KorNLI's XNLI dev and test, verified,
into paths.raw_dir.

Official files are checked against their published checksums and record counts. A mirror
(data.mirror, data.kornli.mirror: a folder, file:// or http(s):// URL) is accepted because it
was configured, and its files are still schema-checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from klue_nli.core.errors import DataError
from klue_nli.core.io import atomic_dir
from klue_nli.core.params import DataParams, Params
from klue_nli.core.secrets import hide_password
from klue_nli.core.stage_runner import run_stage
from klue_nli.data import kornli
from klue_nli.data.fetch import fetch
from klue_nli.data.klue import parse_examples, split_filename


@dataclass(frozen=True)
class Checksums:
    sha256: str | None = None
    git_blob_sha1: str | None = None  # what GitHub shows for a file: sha1(b"blob <size>\0" + data)
    count: int | None = None


# Published facts of the official release (KLUE-benchmark/KLUE, klue_benchmark/klue-nli-v1.1).
OFFICIAL: dict[str, Checksums] = {
    "train": Checksums(git_blob_sha1="a7903d15f09a3663d8f1d78e68d8d6c10dbd8618", count=24_998),
    "dev": Checksums(
        sha256="0699db82be17766b26e199864e6260443e17ec6e91d1870e876419e388f245b1",
        git_blob_sha1="db052b2459c68d1ec57dd1573bfe90a9bb3f8157",
        count=3_000,
    ),
}


# KorNLI as released (kakaobrain/kor-nlu-datasets, master, KorNLI/).
KORNLI_OFFICIAL: dict[str, Checksums] = {
    "dev": Checksums(
        sha256="821fb1c1c2e538ac2724a6132da36ffa379eb9a542ceb89243b3cf711377382c",
        git_blob_sha1="21305150d466aa35d42b14e1890b7dcd58084634",
        count=2_490,
    ),
    "test": Checksums(
        sha256="0db53cf8e182283a0d0404ec3fe1b15d1e29236d23d22082dc20d43067254b3e",
        git_blob_sha1="89a0b11bffa775fafd88178b3980a1fe2d8aee52",
        count=5_010,
    ),
}


@dataclass(frozen=True)
class Release:
    """One dataset's files: where they are, how they are named, parsed and checked."""

    base_url: str
    mirror: str | None
    filename: Callable[[str], str]
    parse: Callable[[bytes, str], list]
    official: dict[str, Checksums]
    mirror_key: str  # what an offline user sets instead: the param and the recipes' variable


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify(data: bytes, expected: Checksums, name: str) -> None:
    if expected.sha256 and hashlib.sha256(data).hexdigest() != expected.sha256:
        raise DataError(f"{name}: sha256 mismatch (expected {expected.sha256}); corrupt or wrong")
    if expected.git_blob_sha1 and git_blob_sha1(data) != expected.git_blob_sha1:
        raise DataError(
            f"{name}: git blob SHA-1 mismatch (expected {expected.git_blob_sha1}); corrupt or wrong"
        )


def download(params: Params) -> dict:
    """Fetch, verify and write every file; return per-file counts and checksums."""
    data = params.data
    releases = {
        "klue": Release(
            data.base_url,
            data.mirror,
            split_filename,
            parse_examples,
            OFFICIAL,
            "data.mirror (KLUE_NLI_MIRROR for the recipes)",
        ),
        "kornli": Release(
            data.kornli.base_url,
            data.kornli.mirror,
            kornli.kornli_filename,
            kornli.parse_tsv,
            KORNLI_OFFICIAL,
            "data.kornli.mirror (KORNLI_MIRROR for the recipes)",
        ),
    }
    summary: dict = {}
    with atomic_dir(params.paths.raw_dir) as tmp:
        for name, release in releases.items():
            summary[name] = _fetch_release(release, tmp, data)
    return summary


def _fetch_release(release: Release, dest_dir: Path, data_params: DataParams) -> dict:
    mirror = release.mirror
    base = mirror if mirror is not None else release.base_url
    summary: dict = {"source": "mirror" if mirror is not None else "official"}
    for split, expected in release.official.items():
        filename = release.filename(split)
        url = base.rstrip("/") + "/" + filename
        dest = dest_dir / filename
        try:
            fetch(url, dest, data_params)
        except DataError as exc:
            if mirror is not None:
                raise
            raise DataError(f"{exc}; offline, set {release.mirror_key} to a local copy") from None
        data = dest.read_bytes()
        if mirror is None:
            verify(data, expected, url)
        shown = hide_password(url)  # a mirror's URL may carry a login
        examples = release.parse(data, shown)
        if mirror is None and len(examples) != expected.count:
            raise DataError(f"{shown}: {len(examples)} records, expected {expected.count}")
        summary[split] = {"records": len(examples), "sha256": hashlib.sha256(data).hexdigest()}
    return summary


main = partial(run_stage, download)  # the thin main(): params.yaml in, a summary or one error out

if __name__ == "__main__":
    main()
