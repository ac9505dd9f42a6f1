"""Stage 1: download KLUE-NLI v1.1 train and dev, verified, into paths.raw_dir.

Official files are checked against their published checksums and record counts. A mirror
(data.mirror: a folder, file:// or http(s):// URL) is accepted because it was configured, and
its files are still schema-checked.
"""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from klue_nli.cli import run_stage
from klue_nli.data import SPLITS, parse_examples, split_filename
from klue_nli.errors import DataError
from klue_nli.io import atomic_dir
from klue_nli.params import DataParams, Params

CHUNK = 1 << 16


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


class _Retryable(Exception):
    """A failure worth another try: 5xx, a dropped connection, a short body."""


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify(data: bytes, expected: Checksums, name: str) -> None:
    if expected.sha256 and hashlib.sha256(data).hexdigest() != expected.sha256:
        raise DataError(f"{name}: sha256 mismatch (expected {expected.sha256}); corrupt or wrong")
    if expected.git_blob_sha1 and git_blob_sha1(data) != expected.git_blob_sha1:
        raise DataError(
            f"{name}: git blob SHA-1 mismatch (expected {expected.git_blob_sha1}); corrupt or wrong"
        )


def _local_path(source: str) -> Path | None:
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    return Path(source)


def _write_chunks(chunks: Iterable[bytes], dest: Path, total: int | None) -> int:
    written = 0
    with (
        dest.open("wb") as dst,
        tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar,
    ):
        for chunk in chunks:
            dst.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    return written


def _http_get_once(url: str, dest: Path, timeout_s: float) -> None:
    try:
        with requests.get(url, stream=True, timeout=timeout_s) as resp:
            if resp.status_code >= 500 or resp.status_code == 429:
                raise _Retryable(f"HTTP {resp.status_code}")
            if resp.status_code != 200:
                raise DataError(f"{url}: HTTP {resp.status_code} {resp.reason}")
            total = resp.headers.get("Content-Length", "")
            # With Content-Encoding the header counts compressed bytes: no size check then.
            encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
            expected = int(total) if total.isdigit() and not encoded else None
            written = _write_chunks(resp.iter_content(CHUNK), dest, expected)
            if expected is not None and written != expected:
                raise _Retryable(f"short body: {written} of {expected} bytes")
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retryable(type(exc).__name__) from exc
    except requests.RequestException as exc:  # urllib3 protocol errors mid-body, and the like
        raise _Retryable(f"{type(exc).__name__}: {exc}") from exc


def fetch(url: str, dest: Path, data_params: DataParams) -> None:
    """Copy `url` (http(s), file:// or a plain path) to `dest`, retrying transient failures."""
    local = _local_path(url)
    if local is not None:
        try:
            with local.open("rb") as src:
                _write_chunks(iter(lambda: src.read(CHUNK), b""), dest, local.stat().st_size)
        except FileNotFoundError:
            raise DataError(f"{local}: not found") from None
        return
    for attempt in range(data_params.retries + 1):
        try:
            _http_get_once(url, dest, data_params.timeout_s)
            return
        except _Retryable as exc:
            if attempt == data_params.retries:
                raise DataError(
                    f"{url}: failed after {attempt + 1} attempts (last: {exc})"
                ) from None
            delay = data_params.backoff_s * 2**attempt
            tqdm.write(
                f"{url}: {exc}; retrying in {delay:.1f}s ({attempt + 1}/{data_params.retries})"
            )
            time.sleep(delay)


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


def main() -> None:
    run_stage(download)


if __name__ == "__main__":
    main()
