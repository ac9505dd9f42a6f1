"""Corrections through the real service (`bentoml serve`, tests/e2e/conftest.py): answer ids
on /api and /predict, POST /feedback by answer id or by pair into a real SQLite store, its
input rules, the per-client rate limit, a store that is down, a worker killed under 1,000
concurrent corrections, and the page's correction buttons in headless Chromium.

Each test sends its corrections from loopback addresses of its own (127.0.0.0/8 all reach
the server on 127.0.0.1), so the per-address rate limit of one test never meets another's.
The page test's browser sends from 127.0.0.1: this module runs before test_service.py, whose
fuzzers spend that address's corrections.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.recovery import worker_pids
from devtools.sandbox import bentoml_server, free_port, run_module
from klue_nli.core.params import load_params
from klue_nli.data.feedback import FeedbackStore
from klue_nli.data.klue import clean_examples, read_split
from klue_nli.monitoring.drift_check import champion_profile, check, one_line, served_counts
from service.feedback import STORE_ENV
from tests.conftest import ROOT
from tests.e2e.test_flows import prefect_env
from tests.helpers import Webhook

LIMIT = load_params(ROOT / "params.yaml").feedback.per_client_per_minute
PAIR = {"premise": "민수가 지수를 도왔다.", "hypothesis": "지수가 민수를 도왔다."}


def post_from(
    source: str, url: str, path: str, body: dict, timeout: float = 60, headers: dict | None = None
) -> tuple:
    """POST `body` as JSON from the loopback address `source`: (status, headers, JSON)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout, source_address=(source, 0))
    try:
        payload = json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        conn.request("POST", path, payload, sent)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"null")
    finally:
        conn.close()


def own_home(served: dict, tmp_path: Path) -> str:
    """A copy of the shared server's BentoML home, for a second server: BentoML keeps its
    Prometheus files under the home and clears them when a server starts, which would empty
    the shared server's counts."""
    home = tmp_path / "second-server-home"
    shutil.copytree(served["bentoml_home"], home, ignore=shutil.ignore_patterns("prometheus*"))
    return str(home)


def stored(url: str) -> dict[int, dict]:
    return {row["id"]: row for row in FeedbackStore(url).rows()}


def test_drift_is_none_for_dev_again_and_found_in_a_shifted_stream(served, tmp_path, monkeypatch):
    """KLUE dev sent again is no drift from the champion's dev profile (counted from the
    server's counts when the test starts, whatever other tests sent before); then a stream of
    one kind of pair (the premise repeated as its hypothesis, which this task's model calls
    entailment) is, counted since that check (`--since`); the monitoring flow finds the next
    such stream and posts it to the alert webhook."""
    url, state = served["url"], tmp_path / "monitor.json"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served["tracking_uri"])
    version, _ = champion_profile("klue-nli")  # the window opens now, as a check leaves it
    metrics = requests.get(url + "/metrics", timeout=10).text
    opened = served_counts(metrics, version)
    state.write_text(json.dumps({version: opened}))
    dev, _ = clean_examples(read_split(served["raw_dir"], "dev"))
    for start in range(0, len(dev), 64):
        pairs = [
            {"premise": e.premise, "hypothesis": e.hypothesis} for e in dev[start : start + 64]
        ]
        assert post_from("127.0.2.9", url, "/predict", {"pairs": pairs})[0] == 200
    same = check(url, "klue-nli", str(state), min_answers=len(dev))
    print(json.dumps(same))
    assert same["answers"] == len(dev) and same["drift"] is False, same
    assert same["label_psi"] == pytest.approx(0.0, abs=1e-3), same

    shifted = [{"premise": e.premise, "hypothesis": e.premise} for e in dev]
    for start in range(0, len(shifted), 64):
        chunk = {"pairs": shifted[start : start + 64]}
        assert post_from("127.0.2.9", url, "/predict", chunk)[0] == 200
    moved = check(url, "klue-nli", str(state), min_answers=len(dev))
    print(json.dumps(moved))
    assert moved["answers"] == len(dev) and moved["drift"] is True, moved
    assert one_line(moved).startswith("drift: model version ")
    # the scheduled check (a Prefect flow) finds the next shifted stream and posts it to the
    # team's alert webhook
    for start in range(0, len(shifted), 64):
        chunk = {"pairs": shifted[start : start + 64]}
        assert post_from("127.0.2.9", url, "/predict", chunk)[0] == 200
    hook = Webhook()
    try:
        flow = {"service_url": url, "webhook_secret": "klue-nli-alert-webhook"}
        flow["state_file"] = str(state)
        flow["min_answers"] = len(dev)
        flow["params_file"] = str(ROOT / "params.yaml")
        env = prefect_env(
            tmp_path, MLFLOW_TRACKING_URI=served["tracking_uri"], KLUE_NLI_ALERT_WEBHOOK=hook.url
        )
        # the URL into its Secret block, as `klue-nli deploy` saves it; the flow reads it there
        code = (
            "import json, os, sys; from flows.deploy import save_webhook; "
            "from flows.monitor import monitor_flow; "
            "save_webhook(os.environ['KLUE_NLI_ALERT_WEBHOOK']); "
            "print('RESULT ' + json.dumps(monitor_flow(**json.loads(sys.argv[1]))))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, json.dumps(flow)],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert json.loads(line.removeprefix("RESULT "))["drift"] is True
        assert len(hook.received) == 1, hook.received
        assert hook.received[0]["subject"] == "klue-nli drift: model version 1"
        assert hook.received[0]["body"].startswith("drift: model version 1")
    finally:
        hook.close()
    # the CLI says the same in one line, and as JSON
    params = str(ROOT / "params.yaml")
    args = ("klue_nli.cli", "monitor", "--url", url, "--json", "--params", params)
    cli = run_module(
        Path.cwd(), {**os.environ, "MLFLOW_TRACKING_URI": served["tracking_uri"]}, *args
    )
    # no state file: every answer since the server started
    before = sum(opened["labels"].values())
    assert json.loads(cli.splitlines()[-1])["answers"] == before + 3 * len(dev)


def test_answers_carry_an_id_and_a_correction_by_id_stores_the_answer_it_corrects(served):
    url = served["url"]
    status, _, answer = post_from("127.0.2.1", url, "/api", PAIR)
    assert status == 200 and len(answer["answer_id"]) == 32, answer
    right = next(label for label in served["labels"] if label != answer["label"])
    status, _, ack = post_from(
        "127.0.2.1",
        url,
        "/feedback",
        {"answer_id": answer["answer_id"], "label": right, "note": "주어와 목적어가 바뀜"},
    )
    assert status == 200 and ack["status"] == "pending", ack
    row = stored(served["feedback_url"])[ack["feedback_id"]]
    assert (row["premise"], row["hypothesis"]) == (PAIR["premise"], PAIR["hypothesis"])
    assert row["label"] == right and row["answered"] == answer["label"]
    assert row["model_version"] == served["version"] == answer["model_version"]
    assert row["answer_id"] == answer["answer_id"] and row["note"] == "주어와 목적어가 바뀜"

    # /predict gives each result its own id, which a correction names the same way
    status, _, batch = post_from("127.0.2.1", url, "/predict", {"pairs": [PAIR, PAIR]})
    ids = [r["answer_id"] for r in batch["results"]]
    assert status == 200 and len(set(ids)) == 2 and answer["answer_id"] not in ids
    status, _, ack = post_from("127.0.2.1", url, "/feedback", {"answer_id": ids[1], "label": right})
    assert (
        status == 200 and stored(served["feedback_url"])[ack["feedback_id"]]["answer_id"] == ids[1]
    )


def test_a_correction_of_a_pair_is_stored_and_an_unknown_id_alone_is_a_404(served):
    url = served["url"]
    pair = {
        "premise": "상자 안에 사과가 세 개 있다.",
        "hypothesis": "상자 안에 사과가 다섯 개 있다.",
    }
    status, _, ack = post_from("127.0.2.2", url, "/feedback", {**pair, "label": "contradiction"})
    assert status == 200, ack
    row = stored(served["feedback_url"])[ack["feedback_id"]]
    assert row["premise"] == pair["premise"] and row["label"] == "contradiction"
    assert row["answered"] is None and row["status"] == "pending"

    unknown = {"answer_id": "0" * 32, "label": "neutral"}
    status, _, body = post_from("127.0.2.2", url, "/feedback", unknown)
    assert status == 404 and set(body) == {"error", "detail"}, body
    assert "send the premise and hypothesis" in body["error"]


BAD = [
    ({"label": "entailment"}, "body"),  # neither an answer id nor a pair
    ({"label": "yes", "answer_id": "0" * 32}, "label"),
    ({"label": "neutral", "answer_id": "not-an-id"}, "answer_id"),
    ({"label": "neutral", "premise": "전제만 있다."}, "body"),
    ({"label": "neutral", "answer_id": "0" * 32, "note": "a\x00b"}, "note"),
    ({"label": "neutral", "answer_id": "0" * 32, "note": "가" * 501}, "note"),
    ({"label": "neutral", "answer_id": "0" * 32, "note": "\ud800"}, "note"),
    ({"label": "neutral", "premise": None, "hypothesis": None}, "premise"),
    ({"label": "neutral", "answer_id": "0" * 32, "extra": 1}, "extra"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
def test_a_bad_correction_is_a_400_naming_the_field(served, body, field):
    status, _, answer = post_from("127.0.2.3", served["url"], "/feedback", body)
    assert status == 400, answer
    assert set(answer) == {"error", "detail"}
    assert field == "body" or field in answer["error"], answer


def test_one_address_past_its_limit_gets_429_and_others_are_not_held(served):
    url, body = served["url"], {**PAIR, "label": "neutral"}
    answers = [post_from("127.0.2.4", url, "/feedback", body) for _ in range(LIMIT + 1)]
    assert [s for s, _, _ in answers[:LIMIT]] == [200] * LIMIT
    status, headers, error = answers[-1]
    assert status == 429 and int(headers["retry-after"]) >= 1, (status, error)
    assert "too many corrections" in error["error"]
    assert post_from("127.0.2.5", url, "/feedback", body)[0] == 200
    spec = requests.get(f"{url}/docs.json", timeout=10).json()
    assert {"400", "404", "413", "415", "429", "503"} <= set(
        spec["paths"]["/feedback"]["post"]["responses"]
    )


def test_a_client_cannot_name_its_own_address_to_escape_the_limit(served):
    """uvicorn believes X-Forwarded-For from loopback unless told otherwise: a client held at
    429 that names another address must still be held (feedback.trusted_proxies is empty)."""
    url, body = served["url"], {**PAIR, "label": "neutral"}
    for _ in range(LIMIT):
        assert post_from("127.0.2.8", url, "/feedback", body)[0] == 200
    for forwarded in ("10.0.0.1", "10.0.0.2", "203.0.113.9", "2001:db8::1"):
        named = {"X-Forwarded-For": forwarded, "X-Real-IP": forwarded}
        status, _, error = post_from("127.0.2.8", url, "/feedback", body, headers=named)
        assert status == 429, (forwarded, status, error)


def test_correction_text_never_reaches_the_log(served):
    marker = "로그에남으면안되는문장"
    body = {"premise": marker, "hypothesis": marker, "label": "entailment"}
    assert post_from("127.0.2.6", served["url"], "/feedback", body)[0] == 200
    time.sleep(0.5)
    assert marker not in served["log"].read_text(encoding="utf-8", errors="replace")


def test_with_the_store_down_feedback_is_503_and_the_model_keeps_answering(served, tmp_path):
    """The store a PostgreSQL URL names, on a port where nothing listens: /feedback is a 503
    in the project's shape within seconds, and /api answers as before."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENTOML_HOME": own_home(served, tmp_path),
        STORE_ENV: f"postgresql://klue:klue@127.0.0.1:{free_port()}/feedback",
    }
    server = bentoml_server(ROOT, port, tmp_path / "serve.log", env)
    try:
        server.wait_ready(timeout=180)
        url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        status, _, body = post_from("127.0.2.7", url, "/feedback", {**PAIR, "label": "neutral"})
        took = time.perf_counter() - started
        assert status == 503 and "feedback store is unavailable" in body["error"], body
        assert took < 5, took
        status, _, answer = post_from("127.0.2.7", url, "/api", PAIR)
        assert status == 200 and answer["label"] in served["labels"]
    finally:
        server.stop()


def test_every_acknowledged_correction_of_1000_survives_a_killed_worker(served, tmp_path):
    """1,000 corrections from 25 concurrent clients (50 addresses, 20 each: under the limit),
    the serving worker SIGKILLed after the first 300 acknowledgements. Every 200 is a row in
    the store with its own text; nothing in the store is half-written."""
    port = free_port()
    store = f"sqlite:///{tmp_path / 'feedback.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENTOML_HOME": own_home(served, tmp_path),
        STORE_ENV: store,
    }
    server = bentoml_server(ROOT, port, tmp_path / "serve.log", env)
    acknowledged: dict[int, int] = {}  # feedback_id -> post number
    failed = 0
    lock = threading.Lock()
    try:
        server.wait_ready(timeout=180)
        url = f"http://127.0.0.1:{port}"
        [victim] = worker_pids(server.proc.pid)
        killed = threading.Event()

        def correct(i: int) -> None:
            nonlocal failed
            body = {"premise": f"전제 {i}번.", "hypothesis": f"가설 {i}번.", "label": "neutral"}
            body["note"] = f"post {i}"
            try:
                status, _, ack = post_from(f"127.0.3.{i % 50 + 1}", url, "/feedback", body, 120)
            except (OSError, http.client.HTTPException):
                status, ack = None, None
            with lock:
                if status == 200:
                    acknowledged[ack["feedback_id"]] = i
                else:
                    failed += 1
                if len(acknowledged) >= 300 and not killed.is_set():
                    killed.set()
                    os.kill(victim, signal.SIGKILL)

        with ThreadPoolExecutor(max_workers=25) as pool:
            list(pool.map(correct, range(1000)))
        assert killed.is_set()
        assert worker_pids(server.proc.pid) != [victim]  # a new worker answered the rest
    finally:
        server.stop()
    rows = stored(store)
    print(json.dumps({"acknowledged": len(acknowledged), "failed": failed, "stored": len(rows)}))
    assert len(acknowledged) + failed == 1000
    assert len(acknowledged) >= 900, (len(acknowledged), failed)  # lost: what the worker held
    missing = set(acknowledged) - set(rows)
    assert not missing, sorted(missing)[:10]
    for feedback_id, i in acknowledged.items():
        row = rows[feedback_id]
        assert (row["premise"], row["hypothesis"], row["note"]) == (
            f"전제 {i}번.",
            f"가설 {i}번.",
            f"post {i}",
        )
    # rows stored but not acknowledged (the answer died with the worker) are whole rows too
    for row in rows.values():
        assert row["premise"].startswith("전제 ") and row["label"] == "neutral"
        assert row["note"] == "post " + row["premise"].split()[1].removesuffix("번.")


def test_a_correction_clicked_on_the_page_is_in_the_store(served, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        with sync_playwright() as pw:
            if not Path(pw.chromium.executable_path).exists():
                pytest.fail("no browser for the page test: run `make browser`")
    premise = "회의는 점심을 먹기 전에 끝났다."
    hypothesis = "회의는 점심을 먹은 후에 끝났다."
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(served["url"] + "/")
        page.fill("#premise", premise)
        page.fill("#hypothesis", hypothesis)
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=30_000)
        page.click("#correct button[data-label='contradiction']")
        # waits by selector: the page's CSP forbids eval, which a string predicate would need
        page.wait_for_selector("#thanks:not(:empty)")
        assert "거짓" in page.text_content("#thanks")
        assert page.text_content("#error") == ""
        page.screenshot(path=str(tmp_path / "corrected.png"), full_page=True)
        browser.close()
    rows = [r for r in stored(served["feedback_url"]).values() if r["premise"] == premise]
    assert len(rows) == 1, rows
    [row] = rows
    assert row["hypothesis"] == hypothesis and row["label"] == "contradiction"
    assert row["answered"] in served["labels"] and row["answer_id"]
    assert row["model_version"] == served["version"]


correction_like = st.fixed_dictionaries(
    {},
    optional={
        "label": st.sampled_from(["entailment", "contradiction", "neutral"]) | st.text(),
        "answer_id": st.text(alphabet="0123456789abcdef", min_size=30, max_size=34) | st.integers(),
        "premise": st.text(max_size=1200) | st.none(),
        "hypothesis": st.text(max_size=1200),
        "note": st.text(max_size=600),
        "extra": st.booleans(),
    },
)
SENT = itertools.count()


@given(body=correction_like)
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_property_any_correction_is_stored_or_refused_never_a_5xx(served, body):
    """Whatever fields and values a correction has: a 200 is a stored row, anything else is
    the project's 400 or 404 (or 429 past the limit), never a 5xx. Each example comes from
    an address of its own (250 in turn), so the limit is met only where it should be."""
    source = f"127.0.4.{next(SENT) % 250 + 1}"
    status, _, answer = post_from(source, served["url"], "/feedback", body)
    assert status in (200, 400, 404, 429), (body, status, answer)
    if status == 200:
        row = stored(served["feedback_url"])[answer["feedback_id"]]
        premise = unicodedata.normalize("NFC", body["premise"])  # the one text rule
        assert row["label"] == body["label"] and row["premise"] == premise
    else:
        assert set(answer) == {"error", "detail"}, answer
