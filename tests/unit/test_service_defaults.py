"""The BentoML defaults the service declares (service/service.py): trace spans are
left off its JSON routes, and off nothing else (the access log: tests/e2e/test_service.py)."""

from __future__ import annotations

from opentelemetry.util.http import ExcludeList

from service.service import JSON_ROUTES, NLIService


def test_the_json_routes_and_only_they_are_left_out_of_tracing():
    excluded = ExcludeList(NLIService.config["tracing"]["excluded_urls"])
    for path in JSON_ROUTES:
        assert excluded.url_disabled(f"http://127.0.0.1:3000{path}"), path
        assert excluded.url_disabled(f"http://127.0.0.1:3000{path}?x=1"), path
    for path in ("/", "/apidocs", "/api/other", "/metrics", "/readyz", "/docs.json"):
        assert not excluded.url_disabled(f"http://127.0.0.1:3000{path}"), path
