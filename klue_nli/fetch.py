"""Copy a file from http(s), file:// or a plain path, with a progress bar; over HTTP with a
timeout and retries with exponential backoff for what is worth another try (5xx, 429, a
dropped connection, a timeout, a short body). This is the pipeline's one retry layer: the
Prefect flow does not retry the download on top of it."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import requests
from tqdm import tqdm

from klue_nli.errors import DataError
from klue_nli.params import DataParams

CHUNK = 1 << 16


class _Retryable(Exception):
    """A failure worth another try: 5xx, a dropped connection, a short body."""


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
