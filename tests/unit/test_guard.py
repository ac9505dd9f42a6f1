"""What reaches the service (service/guard.py), what every answer tells a browser
(service/headers.py), and the feedback store's file mode and caps: each against a small
ASGI app or a scratch file."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import stat

import pytest

from klue_nli.core.errors import ParamsError
from klue_nli.data.feedback import FeedbackStore, sqlite_url
from service.guard import Guard, allowed_hosts, host_name
from service.headers import SecurityHeaders, content_security_policy
from tests.conftest import ROOT, default_params
from tests.helpers import asgi_call as call
from tests.helpers import ok_app as _ok

PAGE = ROOT / "service/static/index.html"


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"127.0.0.1:3000", "127.0.0.1"),
        (b"LOCALHOST", "localhost"),
        (b"[::1]:3000", "::1"),
        (b"::1", "::1"),
        (b"evil.example:80", "evil.example"),
    ],
)
def test_the_host_name_is_read_without_its_port(header, name):
    assert host_name(header) == name


def test_only_allowed_host_names_and_known_paths_are_answered(monkeypatch):
    monkeypatch.delenv("KLUE_NLI_ALLOWED_HOSTS", raising=False)
    hosts = allowed_hosts(default_params().serve.allowed_hosts)
    assert hosts == {"localhost", "127.0.0.1", "::1"}
    guard = Guard(_ok, hosts)
    assert call(guard)[0] == 200
    assert call(guard, host=b"[::1]:3000")[0] == 200
    # a DNS-rebinding page names its own host; no Host at all is no better
    for host in (b"attacker.example", b"127.0.0.1.attacker.example:3000", None):
        status, _, body = call(guard, host=host)
        assert status == 400 and "host name" in json.loads(body)["error"], host
    # unknown paths never reach the app (nor BentoML's per-path metrics behind it)
    for path in ("/docs", "/redoc", "/openapi.json", "/static_content/x.js", "/probe-1"):
        status, _, body = call(guard, path=path)
        assert status == 404 and json.loads(body)["error"] == "no such route", path
    monkeypatch.setenv("KLUE_NLI_ALLOWED_HOSTS", "nli.example.org, *")
    assert call(Guard(_ok, allowed_hosts(("localhost",))), host=b"anything")[0] == 200


def test_every_answer_carries_a_policy_that_allows_only_the_pages_own_script_and_style():
    page = PAGE.read_text(encoding="utf-8")
    policy = content_security_policy(page)
    script = re.search(r"<script>(.*?)</script>", page, flags=re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
    assert "'unsafe-inline'" not in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    for app in (SecurityHeaders(_ok, PAGE), SecurityHeaders(Guard(_ok, frozenset()), PAGE)):
        _, headers, _ = call(app)  # answered, or refused by the guard: the same headers
        assert headers[b"content-security-policy"] == policy.encode()
        assert headers[b"x-content-type-options"] == b"nosniff"
        assert headers[b"referrer-policy"] == b"no-referrer"


def test_trusted_proxies_are_addresses_or_networks():
    assert default_params().feedback.trusted_proxies == ()  # none trusted by default
    assert default_params(feedback={"trusted_proxies": ["10.0.0.0/8", "::1"]})
    for bad in (["proxy.example"], ["10.0.0.1/8"]):
        with pytest.raises(ParamsError, match=r"feedback\.trusted_proxies"):
            default_params(feedback={"trusted_proxies": bad})


def test_the_sqlite_store_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "feedback" / "store.db"
    store = FeedbackStore(sqlite_url(path))
    store.add("전제", "가설", "neutral", note=None)
    for file in (path, path.with_name("store.db-wal")):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    older = tmp_path / "older.db"  # a store an earlier version left readable
    older.touch(mode=0o644)
    older.chmod(0o644)
    FeedbackStore(sqlite_url(older))
    assert stat.S_IMODE(older.stat().st_mode) == 0o600


def test_past_a_cap_on_stored_corrections_the_store_refuses_and_says_when(tmp_path):
    from klue_nli.data.feedback import StoreFull

    store = FeedbackStore(sqlite_url(tmp_path / "store.db"))
    for _ in range(3):
        store.add("전제", "가설", "neutral", note=None, caps=(3, 100))
    with pytest.raises(StoreFull, match=r"3 corrections wait for review") as full:
        store.add("전제", "가설", "neutral", note=None, caps=(3, 100))
    assert full.value.retry_after_s == 3600
    assert store.counts()["pending"] == 3  # the refused row was not stored
    store.review([1, 2, 3], "accepted")  # reviewed: not pending, but all within the hour
    with pytest.raises(StoreFull, match=r"3 corrections in the last hour") as hourly:
        store.add("전제", "가설", "neutral", note=None, caps=(3, 3))
    assert 3500 < hourly.value.retry_after_s <= 3601


def test_a_full_queue_is_a_503_with_retry_after_in_the_projects_shape():
    from service.contract import answer
    from service.feedback import QueueFull

    async def full(_request):
        raise QueueFull("10000 corrections wait for review (feedback.max_pending)", 3600)

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(answer(send, "/feedback", full, None))
    start = sent[0]
    assert start["status"] == 503 and dict(start["headers"])[b"retry-after"] == b"3600"
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["error"].startswith("10000 corrections wait for review")


def test_the_team_stacks_secret_files_are_never_readable_by_others(tmp_path):
    """The PostgreSQL password file and .team/env: 0600 from creation, whatever the umask."""
    import os

    from devtools.team import _write_private

    old = os.umask(0)
    try:
        _write_private(tmp_path / "pw", "s3cret")
        (tmp_path / "env").write_text("old")
        (tmp_path / "env").chmod(0o644)
        _write_private(tmp_path / "env", "export X=1\n")
    finally:
        os.umask(old)
    for name in ("pw", "env"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert (tmp_path / "env").read_text() == "export X=1\n"
