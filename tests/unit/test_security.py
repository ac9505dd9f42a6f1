"""Security checks: no unsafe deserialisation in the project's code, loopback-only defaults,
and nothing private (local paths, credentials) in what MLflow records."""

from __future__ import annotations

import ast

import pytest

from klue_nli.registry import tracking
from tests.conftest import ROOT

CODE_DIRS = ("klue_nli", "benchmarks")


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


UNSAFE = {
    "pickle.load",
    "pickle.loads",
    "cloudpickle.load",
    "joblib.load",
    "dill.load",
    "marshal.loads",
    "yaml.unsafe_load",
    "eval",
    "exec",
}


def unsafe_calls(source: str) -> list[str]:
    found = []
    for node, name in calls(ast.parse(source)):
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if name in UNSAFE:
            found.append(name)
        elif name == "torch.load" and keywords.get("weights_only") != "True":
            found.append("torch.load without weights_only=True")
        elif name == "yaml.load" and "Safe" not in keywords.get("Loader", ""):
            found.append("yaml.load without a safe Loader")
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = "import torch, pickle\ntorch.load(p)\npickle.loads(b)\nyaml.load(s)\n"
    assert len(unsafe_calls(bad)) == 3
    assert unsafe_calls("torch.load(p, weights_only=True)\nyaml.safe_load(s)\n") == []


def test_no_unsafe_deserialisation_in_the_project():
    offenders = {
        str(path.relative_to(ROOT)): found
        for folder in CODE_DIRS
        for path in (ROOT / folder).rglob("*.py")
        if (found := unsafe_calls(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_every_server_default_binds_loopback():
    from service.service import NLIService

    assert NLIService.config["http"]["host"] == "127.0.0.1"
    makefile = (ROOT / "Makefile").read_text()
    team = (ROOT / "devtools/team.py").read_text()
    # every server each file starts: each must be found (a renamed command fails here, not
    # silently), and each line that starts one names the loopback host
    launches = {
        makefile: ("mlflow ui", "prefect server start", "bentoml serve"),
        team: ('"mlflow", "server"', '"prefect", "server", "start"', '"moto.server"'),
    }
    for text, commands in launches.items():
        for command in commands:
            lines = [line for line in text.splitlines() if command in line]
            assert lines, f"{command!r} is started nowhere: update this test"
            for line in lines:
                assert "127.0.0.1" in line, line
        assert "0.0.0.0" not in text


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("/home/me/data/kcbert-base", "<local>/kcbert-base"),
        ("file:///srv/mirror/klue-nli", "<local>/klue-nli"),
        ("~/klue", "<local>/klue"),
        ("https://user:s3cret@mirror.example/klue", "https://user:***@mirror.example/klue"),
        # a password holding the characters a plain URL split stops at
        (
            "postgresql://u:p/ss#w?rd@db.example:5432/klue",
            "postgresql://u:***@db.example:5432/klue",
        ),
        (
            "postgresql://db.example/klue?sslmode=require&password=s3cret",
            "postgresql://db.example/klue?sslmode=require&password=***",
        ),
        ("host=db.example dbname=klue password=s3cret", "host=db.example dbname=klue password=***"),
        (
            "host=db.example password='s3 cret' dbname=klue",
            "host=db.example password=*** dbname=klue",
        ),
        ("https://host/a@b", None),
        ("https://raw.githubusercontent.com/KLUE-benchmark/KLUE", None),
        ("beomi/kcbert-base", None),
        ("data/raw", None),
    ],
)
def test_redaction_of_values_before_they_are_logged(value, logged):
    assert tracking.redact(value) == (value if logged is None else logged)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("feedback", "database_url", "postgresql://klue:p/ss#w?rd@db.example/feedback"),
        ("feedback", "database_url", "postgresql://db.example/feedback?password=s3cret"),
        ("feedback", "database_url", "host=db.example password=s3cret dbname=feedback"),
        ("data", "mirror", "https://me:s3cret@mirror.example/klue-nli"),
        ("data", "base_url", "https://me:s3cret@mirror.example/klue-nli"),
    ],
)
def test_a_password_in_params_yaml_is_refused_naming_the_key(section, key, value):
    """params.yaml is committed, logged to MLflow and packed into the Bento: a password
    written there is refused in one line, before it can travel."""
    from klue_nli.core.errors import ParamsError
    from tests.conftest import default_params

    with pytest.raises(ParamsError, match=rf"^{section}\.{key}: holds a password") as refused:
        default_params(**{section: {key: value}})
    assert "s3cret" not in str(refused.value) and "w?rd" not in str(refused.value)
    assert default_params(feedback={"database_url": "postgresql://klue@db.example/feedback"})


def test_a_webhook_that_refuses_or_is_gone_is_named_without_its_secret_path():
    """A chat webhook's URL path is its secret: an error line shows the scheme and host only
    (requests' own message quotes the whole URL)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from devtools.sandbox import free_port
    from klue_nli.core.errors import UserError
    from klue_nli.monitoring.webhook import notify

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    Thread(target=server.serve_forever, daemon=True).start()
    result = {"model_version": "3", "answers": 300, "drift": None, "reason": "few"}
    secret = "T000/B000/XXXXsecretXXXX"
    try:
        for url, said in (
            (f"http://127.0.0.1:{server.server_port}/services/{secret}", "HTTP 404"),
            (f"http://127.0.0.1:{free_port()}/services/{secret}", "did not answer"),
        ):
            with pytest.raises(UserError) as refused:
                notify(url, result)
            assert secret not in str(refused.value) and said in str(refused.value)
            assert "http://127.0.0.1/…" in str(refused.value)
    finally:
        server.shutdown()
        server.server_close()
