"""Copy a file from http(s), file:// or a plain path, with a progress bar; over HTTP with a
timeout and retries with exponential backoff for what is worth another try (5xx, 429, a
dropped connection, a timeout, a short body), waiting at least what a 429's or 503's
Retry-After asks. What no retry can fix (an invalid URL, a redirect loop, a 404) fails at
once. This is the pipeline's one retry layer: the Prefect flow does not retry on top of it.

Why not urllib3's `Retry` on a requests adapter: it retries only until a response starts,
while three of the faults tests/stage/test_download.py serves (a reset, a stall and a short
body) happen while the body streams, after it has handed the response over. Those need this
loop anyway; one loop keeps one attempt count and prints one line per retry, where two
nested layers would multiply the attempts and retry silently (urllib3 logs at debug)."""

from __future__ import annotations

import datetime
import email.utils
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import requests
from tqdm import tqdm

from klue_nli.core.errors import DataError
from klue_nli.core.params import DataParams
from klue_nli.core.secrets import hide_password

CHUNK = 1 << 16
MAX_RETRY_AFTER_S = 300.0  # a longer Retry-After is waited out this long at most per try


class _Retryable(Exception):
    """A failure worth another try: 5xx, a dropped connection, a short body."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _local_path(source: str) -> Path | None:
    try:
        parsed = urllib.parse.urlparse(source)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise DataError(f"{source}: not a URL this download can fetch ({exc})") from None
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


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (RFC 9110: delay-seconds or an HTTP date), None if absent."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _http_get_once(url: str, dest: Path, timeout_s: float) -> None:
    # what a line may show: a mirror's URL may carry a login (`https://user:password@...`,
    # `?token=`), and requests' own messages quote the URL as it is
    shown = hide_password(url)
    try:
        with requests.get(url, stream=True, timeout=timeout_s) as resp:
            if resp.status_code >= 500 or resp.status_code == 429:
                wait = _retry_after(resp.headers.get("Retry-After"))
                raise _Retryable(f"HTTP {resp.status_code}", wait)
            if resp.status_code != 200:
                raise DataError(f"{shown}: HTTP {resp.status_code} {resp.reason}")
            total = resp.headers.get("Content-Length", "")
            # With Content-Encoding the header counts compressed bytes: no size check then.
            encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
            expected = int(total) if total.isdigit() and not encoded else None
            written = _write_chunks(resp.iter_content(CHUNK), dest, expected)
            if expected is not None and written != expected:
                raise _Retryable(f"short body: {written} of {expected} bytes")
    except (requests.TooManyRedirects, requests.exceptions.InvalidURL) as exc:
        said = hide_password(str(exc))
        raise DataError(f"{shown}: {type(exc).__name__}: {said}") from None  # retrying cannot help
    except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema) as exc:
        said = hide_password(str(exc))
        raise DataError(f"{shown}: not a URL this download can fetch ({said})") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retryable(type(exc).__name__) from exc
    except requests.RequestException as exc:  # urllib3 protocol errors mid-body, and the like
        raise _Retryable(f"{type(exc).__name__}: {hide_password(str(exc))}") from exc


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
    shown = hide_password(url)
    for attempt in range(data_params.retries + 1):
        try:
            _http_get_once(url, dest, data_params.timeout_s)
            return
        except _Retryable as exc:
            if attempt == data_params.retries:
                raise DataError(
                    f"{shown}: failed after {attempt + 1} attempts (last: {exc})"
                ) from None
            delay = data_params.backoff_s * 2**attempt
            if exc.retry_after is not None:  # the server said when: no sooner, within reason
                delay = min(max(delay, exc.retry_after), MAX_RETRY_AFTER_S)
            tqdm.write(
                f"{shown}: {exc}; retrying in {delay:.1f}s ({attempt + 1}/{data_params.retries})"
            )
            time.sleep(delay)
