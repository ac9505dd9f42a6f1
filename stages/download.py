"""Stage 1: download KLUE-NLI v1.1 train and dev, verified, into paths.raw_dir.

Official files are checked against their published checksums and record counts. A mirror
(data.mirror: a folder, file:// or http(s):// URL) is accepted because it was configured, and
its files are still schema-checked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial

from klue_nli.core.cli import run_stage
from klue_nli.core.errors import DataError
from klue_nli.core.io import atomic_dir
from klue_nli.core.params import Params
from klue_nli.data.fetch import fetch
from klue_nli.data.klue import SPLITS, parse_examples, split_filename


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
    """Fetch, verify and write both splits; return per-split counts and checksums."""
    data_params = params.data
    mirror = data_params.mirror
    base = mirror if mirror is not None else data_params.base_url
    summary: dict = {"source": "mirror" if mirror is not None else "official"}
    with atomic_dir(params.paths.raw_dir) as tmp:
        for split in SPLITS:
            filename = split_filename(split)
            url = base.rstrip("/") + "/" + filename
            dest = tmp / filename
            fetch(url, dest, data_params)
            data = dest.read_bytes()
            if mirror is None:
                verify(data, OFFICIAL[split], url)
            examples = parse_examples(data, url)
            expected_count = OFFICIAL[split].count
            if mirror is None and len(examples) != expected_count:
                raise DataError(f"{url}: {len(examples)} records, expected {expected_count}")
            summary[split] = {
                "records": len(examples),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    return summary


main = partial(run_stage, download)  # the thin main(): params.yaml in, a summary or one error out

if __name__ == "__main__":
    main()
