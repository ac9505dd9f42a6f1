"""The BentoML service end to end: a tiny model trained by the real stages, registered,
promoted and exported, served by a real `bentoml serve` on a free loopback port; every
endpoint, the bad-input list, and the page in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.sandbox import (
    bento_service,
    bentoml_server,
    free_port,
    relabelled_store,
    run_module,
)
from tests.conftest import ROOT, default_params

ARTIFACTS = ROOT / "test-artifacts"


def post(url: str, body, **kwargs) -> requests.Response:
    if isinstance(body, str | bytes):
        return requests.post(url, data=body, timeout=30, **kwargs)
    return requests.post(url, json=body, timeout=30, **kwargs)


def test_api_answers_like_the_tutorial_and_matches_evaluate(served):
    url, dev = served["url"], served["dev"]
    for i in (0, 5):
        resp = post(f"{url}/api", {"premise": dev[i].premise, "hypothesis": dev[i].hypothesis})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["premise"] == dev[i].premise and body["hypothesis"] == dev[i].hypothesis
        probs = [body["probabilities"][label] for label in served["labels"]]
        np.testing.assert_allclose(probs, served["probs"][i], atol=served["atol"])
        best = served["labels"][int(np.argmax(probs))]
        names = {"entailment": "참", "contradiction": "거짓", "neutral": "중립"}
        assert body["prediction"] == f"{names[best]} ({best})"
        for label in served["labels"]:  # the tutorial's own expressions (literals: test_answers)
            p = body["probabilities"][label]
            assert body[f"{label}_data"] == f"{names[label]} {round(p, 2)}"
            assert body[f"{label}_width"] == f"{round(p, 2) * 100}%"
        assert body["truncated"] is served["truncated"][i]  # as the evaluated model says
        assert body["model_version"] == served["version"]
        assert body["unsure"] is bool(max(probs) < served["unsure_below"])
    long = post(f"{url}/api", {"premise": "오늘은 비가 온다. " * 60, "hypothesis": "비가 온다."})
    assert long.status_code == 200 and long.json()["truncated"] is True


def test_predict_batches_pairs_in_order(served):
    url, dev = served["url"], served["dev"]
    pairs = [{"premise": e.premise, "hypothesis": e.hypothesis} for e in dev]
    resp = post(f"{url}/predict", {"pairs": pairs})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == len(dev)
    got = np.array([[r["probabilities"][label] for label in served["labels"]] for r in results])
    np.testing.assert_allclose(got, served["probs"], atol=served["atol"])


def test_answers_below_the_calibrated_threshold_say_unsure_and_are_counted(served):
    """The threshold train fitted on validation splits the dev pairs (some sure, some not),
    each answer says which it is, and /metrics counts the unsure ones for drift monitoring."""
    from benchmarks.serving import scrape

    url, dev = served["url"], served["dev"]
    expected = [bool(p.max() < served["unsure_below"]) for p in served["probs"]]
    assert any(expected) and not all(expected), served["unsure_below"]
    key = "klue_nli_unsure_answers_total"
    before = scrape(url).get(key, 0.0)
    pairs = [{"premise": e.premise, "hypothesis": e.hypothesis} for e in dev]
    results = post(f"{url}/predict", {"pairs": pairs}).json()["results"]
    # bf16 may move a probability sitting at the threshold: compare away from it
    near = np.abs(served["probs"].max(axis=1) - served["unsure_below"]) <= served["atol"]
    got = [r["unsure"] for r in results]
    assert [g for g, n in zip(got, near, strict=True) if not n] == [
        e for e, n in zip(expected, near, strict=True) if not n
    ]
    assert scrape(url)[key] - before == sum(got)


def test_requests_write_no_access_log_lines(served):
    """BentoML's access log is off by default (service.py): a line per request took a share
    of the event loop that the model's batches wait on. 80 lines would overflow the worker's
    stdout buffer, so were they written, some would be in the log by now."""
    url, e = served["url"], served["dev"][0]
    for _ in range(80):
        assert post(f"{url}/api", {"premise": e.premise, "hypothesis": e.hypothesis}).ok
    assert "path=/api" not in served["log"].read_text(encoding="utf-8", errors="replace")


def test_health_metrics_and_openapi(served):
    url = served["url"]
    assert requests.get(f"{url}/livez", timeout=10).status_code == 200
    assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
    requests.post(f"{url}/api", json={"premise": "비가 온다.", "hypothesis": "맑다."}, timeout=30)
    metrics = requests.get(f"{url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert 'klue_nli_request_duration_seconds_count{code="200",route="/api"}' in metrics.text
    # the service's own: what each model call batched, padding, queue wait, model time
    from benchmarks.serving import scrape

    seen = scrape(url)
    assert seen["klue_nli_batch_pairs_count"] >= 1
    assert seen["klue_nli_tokens_total|padded"] >= seen["klue_nli_tokens_total|real"] > 0
    assert seen["klue_nli_queue_wait_seconds_count"] >= seen["klue_nli_batch_pairs_count"]
    assert seen["klue_nli_model_seconds_sum"] > 0
    spec = requests.get(f"{url}/docs.json", timeout=10).json()
    assert {"/api", "/predict"} <= set(spec["paths"])
    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200 and "전제" in page.text and "가설" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN assets


def test_every_answer_carries_the_security_headers_and_only_known_routes_answer(served):
    url = served["url"]
    answers = {
        "page": requests.get(url + "/", timeout=10),
        "api": post(f"{url}/api", {"premise": "비가 온다.", "hypothesis": "맑다."}),
        "bad": post(f"{url}/api", {"premise": "비가 온다."}),
        "metrics": requests.get(url + "/metrics", timeout=10),
        "unknown": requests.get(url + "/nowhere", timeout=10),
    }
    policy = answers["page"].headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    for name, resp in answers.items():
        assert resp.headers["content-security-policy"] == policy, name
        assert resp.headers["x-content-type-options"] == "nosniff", name
        assert resp.headers["referrer-policy"] == "no-referrer", name
    # FastAPI's and BentoML's documentation pages are not served; the OpenAPI document is
    for path in ("/docs", "/redoc", "/openapi.json", "/static_content/swagger-ui.css"):
        resp = requests.get(url + path, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"] == "no such route", path
    assert requests.get(url + "/docs.json", timeout=10).status_code == 200
    # a request naming another host (a DNS-rebinding page's) is refused
    rebound = requests.post(
        f"{url}/feedback",
        json={"label": "neutral", "premise": "a", "hypothesis": "b"},
        headers={"Host": "attacker.example"},
        timeout=10,
    )
    assert rebound.status_code == 400 and "host name" in rebound.json()["error"]


def test_invented_paths_add_nothing_to_metrics(served):
    """Requests are counted by route: 1,000 invented paths must not add a series."""
    url = served["url"]

    def series() -> set[str]:
        page = requests.get(url + "/metrics", timeout=10).text
        return {line.rsplit(" ", 1)[0] for line in page.splitlines() if not line.startswith("#")}

    with requests.Session() as session:
        session.get(f"{url}/probe-first", timeout=10)  # the `other` route's series exist
        before = series()
        for i in range(1000):
            assert session.get(f"{url}/probe-{i}-%3Cscript%3E", timeout=10).status_code == 404
    assert series() == before
    assert not any("probe" in s for s in before)


LONG = "가" * 1001
BAD_INPUTS = [
    ("/api", {"premise": "전제"}, "hypothesis"),
    ("/api", {"premise": "a", "hypothesis": "b", "extra": 1}, "extra"),
    ("/api", {"premise": 3, "hypothesis": "b"}, "premise"),
    ("/api", {"premise": ["a"], "hypothesis": "b"}, "premise"),
    ("/api", {"premise": "", "hypothesis": "b"}, "premise"),
    ("/api", {"premise": "a", "hypothesis": " \n\t "}, "hypothesis"),
    ("/api", {"premise": LONG, "hypothesis": "b"}, "premise"),
    ("/api", {"premise": "a\x00b", "hypothesis": "b"}, "premise"),
    ("/api", '{"premise": "\\ud800", "hypothesis": "b"}', None),
    ("/api", '{"premise": "a", ', None),
    ("/api", "[1, 2]", None),
    ("/predict", {"pairs": []}, "pairs"),
    ("/predict", {"pairs": [{"premise": "a", "hypothesis": "b"}] * 65}, "pairs"),
    ("/predict", {"pairs": [{"premise": "a"}]}, "hypothesis"),
]


@pytest.mark.parametrize(("route", "body", "field"), BAD_INPUTS)
def test_bad_input_is_a_400_naming_the_field(served, route, body, field):
    """docs/serving.md promises a 400 (not any 4xx) with a JSON error naming the field."""
    headers = {"Content-Type": "application/json"}
    resp = post(served["url"] + route, body, headers=headers)
    assert resp.status_code == 400, resp.text
    error = resp.json()
    assert "error" in error
    if field is not None:
        locs = [part for item in error["detail"] for part in item["loc"]]
        assert field in locs, error
    assert served["server"].alive()


DEEP = "[" * 1000 + "]" * 1000  # 2 KB: past the parser's recursion limit
HUGE_INT = '{"premise": ' + "7" * 5000 + ', "hypothesis": "b"}'  # past its 4,300 digits
REFUSED_BY_THE_PARSER = [
    ("/api", DEEP, "nested too deeply"),
    ("/predict", '{"pairs": ' + DEEP + "}", "nested too deeply"),
    ("/api", HUGE_INT, "a number too large to read"),
    ("/predict", "[" + "9" * 5000 + "]", "a number too large to read"),
]


@pytest.mark.parametrize(("route", "body", "reason"), REFUSED_BY_THE_PARSER)
def test_a_body_the_parser_refuses_is_a_400_at_once(served, route, body, reason):
    """Not only decode errors: a value nested 1,000 deep or a 5,000-digit integer makes the
    JSON parser raise something else; each is the project's 400, well under a second."""
    started = time.perf_counter()
    resp = post(served["url"] + route, body, headers={"Content-Type": "application/json"})
    elapsed = time.perf_counter() - started
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json() == {
        "error": f"the body is not valid JSON ({reason})",
        "detail": [{"loc": ["body"], "msg": reason}],
    }
    assert elapsed < 1.0, elapsed
    assert served["server"].alive()


def test_wrong_content_type_and_odd_unicode(served):
    url = served["url"]
    resp = requests.post(
        f"{url}/api", data="premise=a", timeout=30, headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 415
    # unusual but valid Unicode is answered: emoji, combining jamo, RTL, zero-width joiner
    for text in ("🙂👍🏽", "ᄒ\u1161\u11ab", "مرحبا", "a\u200db", "Ｆｕｌｌｗｉｄｔｈ"):
        resp = post(f"{url}/api", {"premise": text, "hypothesis": text})
        assert resp.status_code == 200, (text, resp.text)
    assert served["server"].alive()


def test_page_in_headless_chromium(served):
    from playwright.sync_api import sync_playwright

    # Debian's chromium where there is one, else Playwright's own (`make browser` gets either)
    chromium = shutil.which("chromium")
    if chromium is None:
        with sync_playwright() as pw:
            if not Path(pw.chromium.executable_path).exists():
                pytest.fail("no browser for the page test: run `make browser`")

    ARTIFACTS.mkdir(exist_ok=True)
    payload = '<script>window.pwned = 1</script><img src=x onerror="window.pwned=2">'
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.goto(served["url"] + "/")
        page.fill("#premise", "오늘은 비가 많이 온다.")
        page.fill("#hypothesis", payload)
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=30_000)
        prediction = page.text_content("#prediction")
        assert prediction.split(" ")[0] in ("참", "거짓", "중립")
        widths = page.evaluate(
            """() => ["entailment", "contradiction", "neutral"].map(l => {
                 const bar = document.getElementById(l + "-bar");
                 const track = bar.parentElement.getBoundingClientRect().width;
                 return bar.getBoundingClientRect().width / track;
               })"""
        )
        assert all(w >= 0 for w in widths) and abs(sum(widths) - 1) < 0.02, widths
        assert page.text_content("#hypothesis-echo") == payload  # shown as text
        assert page.evaluate("window.pwned") is None  # and never run
        first = post(
            served["url"] + "/api", {"premise": "오늘은 비가 많이 온다.", "hypothesis": payload}
        )
        assert page.is_visible("#unsure") is first.json()["unsure"]
        # 확신 낮음 beside the prediction exactly when the answer is unsure
        for i in range(len(served["dev"])):
            if served["probs"][i].max() < served["unsure_below"] - served["atol"]:
                break
        pair = {"premise": served["dev"][i].premise, "hypothesis": served["dev"][i].hypothesis}
        page.fill("#premise", pair["premise"])
        page.fill("#hypothesis", pair["hypothesis"])
        page.click("#submit")
        # waits by selector: the page's CSP forbids eval, which a string predicate would need
        page.locator("#premise-echo", has_text=pair["premise"]).wait_for()
        assert post(f"{served['url']}/api", pair).json()["unsure"] is True
        assert page.is_visible("#unsure") and page.text_content("#unsure") == "확신 낮음"
        page.screenshot(path=str(ARTIFACTS / "nli-page.png"), full_page=True)

        # errors reach the user: an empty hypothesis is refused by the service
        page.fill("#hypothesis", "   ")
        page.evaluate("document.getElementById('hypothesis').removeAttribute('required')")
        page.click("#submit")
        page.wait_for_selector("#error:not(:empty)")
        assert "오류" in page.text_content("#error")
        browser.close()


def test_bentoml_build_packages_the_champion(served):
    env = {**os.environ, "BENTOML_HOME": str(served["bentoml_home"])}
    built = run_module(ROOT, env, "bentoml", "build", "--output", "tag")
    bento_tag = built.strip().splitlines()[-1].removeprefix("__tag__:")
    info = run_module(ROOT, env, "bentoml", "get", bento_tag, "-o", "json", timeout=120)
    bento = json.loads(info)
    models = [m["tag"] for svc in bento["services"] for m in svc["models"]]
    assert models == [served["bento_model"]]

    # ready for `bentoml containerize`: a pinned base, CPU torch, and 0.0.0.0 set in the image
    name, version = bento_tag.split(":")
    folder = Path(served["bentoml_home"]) / "bentos" / name / version
    # it carries the layers the service runs, and nothing of training, registry or tests
    src = folder / "src"
    packed = {p.relative_to(src).parts[:2] for p in src.rglob("*.py")}
    assert {("klue_nli", "core"), ("klue_nli", "data"), ("klue_nli", "inference")} <= packed
    assert ("service", "service.py") in packed  # the face BentoML serves
    assert (src / "service" / "static" / "index.html").is_file()
    assert (src / "params.yaml").is_file()  # read by the service beside its own folder
    assert not {top for top, *_ in packed} - {"klue_nli", "service"}, packed
    training = {("klue_nli", p) for p in ("model", "registry", "experiments", "monitoring", "cli")}
    assert not training & packed, packed
    requirements = next(folder.rglob("requirements.txt")).read_text()
    assert "torch==2.13.0+cpu" in requirements and "mlflow" not in requirements
    generated = "\n".join(p.read_text() for p in folder.rglob("Dockerfile*"))
    assert "FROM python:3.11.16-slim-bookworm" in generated
    assert "KLUE_NLI_ALLOWED_HOSTS" in generated
    assert "download.pytorch.org/whl/cpu" in generated + requirements
    assert (
        "ARG KLUE_NLI_HOST=0.0.0.0" in generated and "ENV KLUE_NLI_HOST=$KLUE_NLI_HOST" in generated
    )


def test_what_is_served_is_what_evaluate_measured(served):
    """The service runs the runtime and precision evaluate recorded (the export's labels),
    and says so: a /readyz header and a /metrics gauge."""
    url, measured = served["url"], served["served"]
    variant = f"{measured['runtime']} {measured['quantize']}"
    ready = requests.get(f"{url}/readyz", timeout=10)
    assert ready.headers["x-klue-nli-served"] == f"v{served['version']} {variant}"
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    gauge = re.search(r"^klue_nli_served_variant\{([^}]*)\} 1\.0$", metrics, re.M)
    assert gauge, metrics[-2000:]
    labels = dict(re.findall(r'(\w+)="([^"]*)"', gauge.group(1)))
    assert labels == {
        "model_version": served["version"],
        "runtime": measured["runtime"],
        "quantize": measured["quantize"],
    }


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            {"served_runtime": "openvino", "served_quantize": "bf16"},
            "the model was measured as openvino bf16, and this CPU computes no bf16 natively",
        ),
        (
            {"served_runtime": None, "served_quantize": None},
            "records no served runtime and precision (exported before they were recorded)",
        ),
    ],
    ids=["bf16-on-a-cpu-without-it", "no-recorded-variant"],
)
def test_a_model_this_machine_cannot_serve_as_measured_is_refused(
    served, tmp_path, labels, message
):
    """A model measured in bf16, on a CPU told it lacks bf16 (KLUE_NLI_CPUINFO); a model
    whose export recorded no variant: the server stops at start with one line."""
    home = tmp_path / "bentoml-relabelled"
    relabelled_store(served["bentoml_home"] / "models", home / "models", **labels)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: a CPU without bf16\nflags\t\t: fpu sse2 avx2 avx512f\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_HOME": str(home)}
    env["KLUE_NLI_CPUINFO"] = str(cpuinfo)
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", bento_service(ROOT), "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert "klue-nli service: error: refusing to serve: " in output, output[-2000:]
    assert message in output, output[-2000:]
    assert "Traceback" not in output, output[-2000:]


def test_the_service_binds_loopback_unless_told_otherwise():
    def host(**extra: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "KLUE_NLI_HOST"}
        code = "import service.service as s; print(s.HOST)"
        cmd = [sys.executable, "-c", code]
        out = subprocess.run(cmd, cwd=ROOT, env={**env, **extra}, capture_output=True, text=True)
        return out.stdout.split()[-1]

    assert host() == "127.0.0.1"
    assert host(KLUE_NLI_HOST="0.0.0.0") == "0.0.0.0"  # what the container image sets


# --- faults and abuse -------------------------------------------------------------------


def test_every_listening_socket_is_on_loopback(served):
    import psutil

    root = psutil.Process(served["server"].proc.pid)
    listening = [
        conn.laddr
        for proc in (root, *root.children(recursive=True))
        for conn in proc.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert listening, "the server listens nowhere?"
    assert {addr.ip for addr in listening} == {"127.0.0.1"}, listening


def raw_post(url: str, headers: list[str], chunks, read_timeout: float = 30) -> bytes:
    """POST over a bare socket: send the head, then body chunks until the server answers
    (or the chunks run out), then read the status line."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=read_timeout) as sock:
        head = [f"POST {u.path} HTTP/1.1", f"Host: {u.netloc}", *headers, "", ""]
        sock.sendall("\r\n".join(head).encode())
        sock.setblocking(False)
        answer = b""
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(chunk)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(read_timeout)
        while b"\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer


def test_oversized_bodies_are_refused_before_they_are_read(served):
    url = served["url"] + "/api"
    # declares 100 MB, sends 1 KB: the 413 comes at once, so the body was never read
    started = time.perf_counter()
    answer = raw_post(
        url,
        ["Content-Type: application/json", f"Content-Length: {100 * 2**20}"],
        [b"x" * 1024],
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.perf_counter() - started < 10

    # chunked, no length: refused once the stream passes the limit, long before its end
    # (64 MB; what was sent before the answer is the limit plus the loopback socket buffers)
    piece = b"x" * 65536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sent = iter([chunk] * 1024)
    answer = raw_post(url, ["Content-Type: application/json", "Transfer-Encoding: chunked"], sent)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    unsent = sum(1 for _ in sent)
    assert unsent > 768, f"{1024 - unsent} of 1024 chunks sent before the refusal"
    assert served["server"].alive()
    ok = post(url, {"premise": "전제", "hypothesis": "가설"})
    assert ok.status_code == 200


def test_a_client_that_sends_its_whole_body_first_reads_the_413(served):
    """Python's urllib writes a 10 MB body whole before it reads: it gets the 413 (the
    service drains the rest of the body before it closes), not a reset connection."""
    import urllib.error
    import urllib.request

    body = b'{"premise": "' + b"x" * (10 * 2**20) + b'", "hypothesis": "h"}'
    request = urllib.request.Request(
        served["url"] + "/api", data=body, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"].startswith("the request body is over")
    assert post(served["url"] + "/api", {"premise": "전제", "hypothesis": "가설"}).ok


def test_the_largest_valid_request_fits_under_the_body_limit(served):
    """Every character \\u-escaped (ensure_ascii) at the text and pair limits: still 200."""
    import json as _json

    from klue_nli.core.params import load_params

    serve = load_params(ROOT / "params.yaml").serve
    text = "가" * serve.max_text_chars
    pairs = [{"premise": text, "hypothesis": text}] * serve.max_pairs_per_request
    body = _json.dumps({"pairs": pairs})  # ensure_ascii: 6 bytes per Korean character
    resp = post(served["url"] + "/predict", body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text[:300]
    assert len(resp.json()["results"]) == serve.max_pairs_per_request


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
pair_like = st.fixed_dictionaries(
    {"premise": st.text(max_size=1200), "hypothesis": st.text(max_size=1200)},
    optional={"extra": json_values},
)


@given(body=st.one_of(pair_like, json_values))
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
def test_property_any_json_to_api_is_answered_without_5xx(served, body):
    resp = post(  # every value as JSON text, null and strings too
        served["url"] + "/api", json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code < 500, (body, resp.status_code, resp.text[:300])
    if resp.status_code == 200:
        probs = resp.json()["probabilities"]
        assert abs(sum(probs.values()) - 1) < 1e-4
    else:
        assert resp.status_code in (400, 413), resp.status_code


@given(raw=st.binary(max_size=2048))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_property_arbitrary_bytes_to_predict_are_answered_without_5xx(served, raw):
    resp = post(served["url"] + "/predict", raw, headers={"Content-Type": "application/json"})
    assert 400 <= resp.status_code < 500, (raw, resp.status_code, resp.text[:300])


def test_schemathesis_with_every_check_finds_nothing(served, tmp_path):
    """schemathesis' own CLI against the service's OpenAPI document: every check (server
    errors, status codes, content types, headers and bodies against the documented schemas,
    invalid data refused, valid data accepted, unsupported methods, ...), every phase that
    applies (coverage and fuzzing: the document has no examples and no links), a fixed seed,
    nothing excluded, /feedback included (its 404 and 429 are documented answers)."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            served["url"] + "/docs.json",
            "--checks",
            "all",
            "--seed",
            "7",
            "--max-examples",
            "150",
            "--continue-on-failure",
            "--workers",
            "1",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "Operations:       7 selected / 7 total" in proc.stdout
    assert "Tested: 7" in proc.stdout
    assert served["server"].alive()


def test_errors_speak_the_projects_words(served):
    """The published contract: JSON only (415 otherwise), a malformed body is a 400, and an
    error names what is wrong without the serving framework's class names or links."""
    url = served["url"]
    for content_type in ("multipart/form-data", "text/plain", "application/x-www-form-urlencoded"):
        resp = requests.post(
            f"{url}/api",
            data='{"premise": "0", "hypothesis": "0"}',
            headers={"Content-Type": content_type},
            timeout=30,
        )
        assert resp.status_code == 415, (content_type, resp.status_code, resp.text)
        assert resp.json()["error"].startswith(f"content type {content_type!r} is not accepted")
    resp = post(f"{url}/api", {})
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "2 fields invalid: premise: field required; hypothesis: field required",
        "detail": [
            {"loc": ["body", "premise"], "msg": "field required"},
            {"loc": ["body", "hypothesis"], "msg": "field required"},
        ],
    }
    for route, body in (("/api", '{"premise": '), ("/predict", {"pairs": [{"premise": "a"}]})):
        resp = post(url + route, body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400
        text = resp.text
        assert "IODescriptor" not in text and "pydantic" not in text and "url" not in resp.json()
    doc = requests.get(f"{url}/docs.json", timeout=30).json()
    for route in ("/api", "/predict"):
        operation = doc["paths"][route]["post"]
        assert operation["requestBody"]["required"] is True
        assert list(operation["requestBody"]["content"]) == ["application/json"]
        assert sorted(operation["responses"]) == ["200", "400", "413", "415", "503"]
    assert served["server"].alive()


def truncate_weights(folder: Path) -> str:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # e.g. a copy cut short
    return "model.safetensors is corrupt"


def drop_calibration(folder: Path) -> str:
    """A model exported before calibration: consistent, but without calibration.json."""
    from klue_nli.core.manifest import CALIBRATION_FILE, write_manifest

    (folder / CALIBRATION_FILE).unlink()
    write_manifest(folder)
    return "calibration.json is missing"


@pytest.mark.parametrize("damage", [truncate_weights, drop_calibration])
def test_a_damaged_model_stops_the_server_with_one_clear_line(served, tmp_path, damage):
    home = tmp_path / "bentoml-damaged"
    shutil.copytree(served["bentoml_home"], home)
    [weights] = list((home / "models").rglob("model.safetensors"))
    said = damage(weights.parent)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", bento_service(ROOT),
         "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert "refusing to serve" in output and said in output, output
    assert "Traceback" not in output, output


def test_a_worker_killed_under_load_is_back_in_seconds_and_loses_only_what_it_held(
    served, tmp_path
):
    """SIGKILL the one serving worker under 8 closed-loop clients: the arbiter starts another,
    which loads the ONNX graph `make export` stored (no export at start: its log says none);
    requests sent meanwhile wait in the socket's backlog and are all answered; only requests
    the dead worker had accepted (one per client at most) are lost."""
    from benchmarks.recovery import kill_under_load, worker_pids

    port = free_port()
    # Its own BentoML home, the model store shared by a link: BentoML clears its Prometheus
    # folder at start, which would blank the counts of the package's server.
    home = tmp_path / "bentoml-home"
    home.mkdir()
    (home / "models").symlink_to(Path(served["bentoml_home"]) / "models")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_HOME": str(home)}
    log = tmp_path / "serve.log"
    server = bentoml_server(ROOT, port, log, env)
    try:
        server.wait_ready(timeout=180)
        url = f"http://127.0.0.1:{port}"
        figures = kill_under_load(url, server.proc.pid, clients=8)
        [worker] = worker_pids(server.proc.pid)  # one replacement, not a crash loop
        assert post(url + "/api", {"premise": "비가 온다.", "hypothesis": "맑다."}).ok
        # it runs the stored graph without PyTorch (1.5 s of a start): libtorch is not loaded
        libraries = {Path(m.path).name for m in psutil.Process(worker).memory_maps()}
    finally:
        server.stop()
    print(json.dumps(figures))
    assert figures["new_worker"], figures
    assert figures["sent_after_kill"] > 0
    assert figures["answered_after_kill"] == figures["sent_after_kill"], figures  # none refused
    assert figures["lost"] <= figures["clients"], figures  # what the dead worker held, at most
    # BentoML's supervisor looks for dead workers every 10 s unless told otherwise
    # (service/respawn.py); the bound is the service's target.
    assert figures["recovery_s"] is not None and figures["recovery_s"] <= 5.0, figures
    assert "exported it at start" not in log.read_text(errors="replace")
    runtime_library = {"onnxruntime": "libonnxruntime", "openvino": "libopenvino"}
    served = runtime_library[default_params().serve.runtime]
    assert any(name.startswith(served) for name in libraries), sorted(libraries)
    assert not any(name.startswith("libtorch") for name in libraries), sorted(libraries)
