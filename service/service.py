"""BentoML service for the promoted (`champion`) KLUE-NLI model.

One service in one process: it validates input, batches concurrent requests adaptively in
process (klue_nli/inference/batching.py), predicts through the shared `Predictor`, formats
answers as the tutorial's web app did, takes corrections of its answers (POST /feedback,
feedback.py), counts what it answers for drift monitoring, and serves the page at `/`.

    bentoml serve service.service:NLIService          # from the project root
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import bentoml
from bentoml.exceptions import ServiceUnavailable
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

from klue_nli.core.cpus import threads_per_worker
from klue_nli.core.errors import UserError
from klue_nli.core.manifest import stat_fingerprint, verify_model_dir
from klue_nli.inference.batching import MicroBatcher, Overloaded
from klue_nli.inference.bento import BENTO_MODEL, served_variant
from klue_nli.inference.predictor import Predictor, require_native
from klue_nli.network.calibration import read_calibration
from service.answers import Acknowledged, Answer, BatchAnswer, Result, tutorial_answer
from service.arrival import ARRIVED, Arrival
from service.contract import JsonContract, Route
from service.feedback import Corrections, Given, LazyStore, RecentAnswers
from service.guard import KNOWN_PATHS, Guard, allowed_hosts
from service.headers import SecurityHeaders
from service.inputs import PARAMS, SERVE, Batch, Correction, Pair
from service.limits import BodyLimit
from service.prometheus import (
    BatchMetrics,
    RequestMetrics,
    exposition,
    observe_answers,
    observe_variant,
)
from service.ratelimit import RateLimit
from service.respawn import prompt_respawn
from service.variant import ServedHeader

# Serving knobs (service/inputs.py reads them from params.yaml: batching, request limits).
# What the model is (labels, tokenizer, max length) comes from the model folder itself.
PAGE = Path(__file__).resolve().parent / "static" / "index.html"
# Loopback unless told otherwise: the container image sets KLUE_NLI_HOST=0.0.0.0
# (bentofile.yaml's docker section); `bentoml serve --host` still overrides both.
HOST = os.environ.get("KLUE_NLI_HOST", "127.0.0.1")
# The largest body a valid request can need, even with every character \u-escaped as a
# surrogate pair (12 bytes); anything bigger is refused before it is read or parsed.
MAX_BODY_BYTES = SERVE.max_pairs_per_request * (2 * SERVE.max_text_chars * 12 + 256) + 1024
# Set by the deployment hook once the model folder passed its checksums, for the workers
# (they inherit the server's environment): the folder's stat_fingerprint then.
CHECKED_ENV = "KLUE_NLI_MODEL_CHECKED"
# The feedback store, opened at first use: one per process, for the corrections and their
# rate limit alike (constructing it reads the environment only)
FEEDBACK_STORE = LazyStore(PARAMS)
# uvicorn's list of the peers whose X-Forwarded-For it believes
FORWARDED_ENV = "FORWARDED_ALLOW_IPS"


# The routes the contract middleware (service/contract.py) answers in one pass.
JSON_ROUTES = {
    "/api": Route(Pair, "answer"),
    "/predict": Route(Batch, "answer_batch"),
    "/feedback": Route(Correction, "take_correction"),
}

# FastAPI's own documentation routes off: /docs.json is the service's OpenAPI document
ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@ui.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


@ui.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus' scrape: the service's metrics (service/prometheus.py), every worker's."""
    body, media_type = exposition()
    return Response(body, media_type=media_type)


@bentoml.service(
    name="klue-nli",
    http={"host": HOST, "port": 3000},
    workers=SERVE.workers,
    # Per-request work the model's batches wait on, off by default (docs/serving.md, Logs and
    # traces): an access-log line per request, and trace spans on the JSON routes (BentoML
    # samples none unless its tracing is configured). A BentoML configuration overrides
    # both (BENTOML_CONFIG, BENTOML_CONFIG_OVERRIDES).
    logging={"access": {"enabled": False}},
    # BentoML's request metrics are labelled by the raw path (a client inventing paths adds
    # series without bound); the service's own are labelled by route (service/prometheus.py)
    metrics={"enabled": False},
    tracing={"excluded_urls": [rf"{path}(\?|$)" for path in JSON_ROUTES]},
)
@bentoml.asgi_app(ui, path="/")
class NLIService:
    bento_model = bentoml.models.BentoModel(BENTO_MODEL)  # the latest export of the champion

    @bentoml.on_deployment
    def check_model() -> None:
        """Runs once in `bentoml serve` before any worker starts: a corrupt or incomplete
        model stops the server with one line, instead of workers crash-looping."""
        try:
            model = bentoml.models.get(BENTO_MODEL)
            # served as measured, or not at all: a variant this CPU cannot run natively
            # would answer in a way nobody measured
            require_native(*served_variant(model))
            # taken before the hashing: a file rewritten meanwhile no longer matches it
            fingerprint = stat_fingerprint(model.path)
            verify_model_dir(model.path, require_manifest=True)
            read_calibration(model.path)  # the probabilities it shows, as evaluate measured them
        except (UserError, bentoml.exceptions.NotFound) as exc:
            print(f"klue-nli service: error: refusing to serve: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        # A worker (the first, or one replacing a crashed one) then checks that no file
        # changed since, instead of hashing the folder again (most of a worker's start).
        os.environ[CHECKED_ENV] = fingerprint

    @bentoml.on_deployment
    def trust_configured_proxies_only() -> None:
        """Runs once in `bentoml serve`, before any worker starts (they inherit it): uvicorn
        takes the client's address from X-Forwarded-For when the peer is in
        FORWARDED_ALLOW_IPS, loopback by default, so any local client could name its own
        address and get a fresh rate-limit bucket. Only feedback.trusted_proxies (none by
        default) are trusted."""
        os.environ[FORWARDED_ENV] = ",".join(PARAMS.feedback.trusted_proxies)

    @bentoml.on_deployment
    def respawn_crashed_workers_promptly() -> None:
        """Runs once in `bentoml serve`, before its arbiter is built: a crashed worker is
        replaced within a second (service/respawn.py)."""
        prompt_respawn()

    def __init__(self) -> None:
        model = self.bento_model  # resolved by BentoML to the stored model at run time
        # the runtime and precision evaluate measured (the export's labels), not params'
        self.runtime, self.quantize = served_variant(model)
        self.predictor = Predictor.from_dir(
            model.path,
            require_manifest=True,
            quantize=self.quantize,
            runtime=self.runtime,
            # Each worker gets its share of the CPUs this process may use (affinity, cgroup
            # quota: not the host's core count); more threads only fight each other.
            threads=threads_per_worker(SERVE.workers),
            checked=os.environ.get(CHECKED_ENV),
        )
        if self.predictor.graph_source == "exported at load":  # slow starts: say why, once
            self._log(
                f"the model has no ONNX graph for quantize={self.quantize}; exported it at "
                "start (`make export` stores one)"
            )
        self.version = model.info.labels.get("registry_version", "unknown")
        observe_variant(self.version, self.runtime, self.quantize)
        self.labels = list(self.predictor.labels)
        self.unsure_below = self.predictor.calibration.unsure_below
        self.recent = RecentAnswers(PARAMS.feedback.recent_answers)
        self.corrections = Corrections(PARAMS, self.recent, FEEDBACK_STORE)
        self.batcher = MicroBatcher(
            self._forward,
            SERVE.max_batch_size,
            SERVE.max_latency_ms,
            observe=BatchMetrics(self.predictor),
            fill_ms=SERVE.batch_fill_ms,
        )
        # BentoML (and torch, where it runs the model) leave millions of long-lived objects;
        # without this, each full garbage collection under load scans them all and stalls
        # every in-flight request while it runs (docs/performance.md).
        gc.freeze()

    @staticmethod
    def _log(message: str) -> None:
        print(f"klue-nli service: {message}", file=sys.stderr, flush=True)

    def _forward(self, pairs: list[tuple[str, str]]) -> list[tuple[list[float], bool]]:
        premises, hypotheses = [p for p, _ in pairs], [h for _, h in pairs]
        probs, truncated = self.predictor.predict_proba_truncated(premises, hypotheses)
        return list(zip(probs.tolist(), truncated.tolist(), strict=True))

    async def _infer(self, pairs: list[tuple[str, str]]) -> list[tuple[dict[str, float], bool]]:
        try:
            rows = await self.batcher.submit(pairs, arrived=ARRIVED.get())
        except Overloaded as exc:
            raise ServiceUnavailable(str(exc)) from None
        return [(dict(zip(self.labels, probs, strict=True)), cut) for probs, cut in rows]

    def _unsure(self, probs: dict[str, float]) -> bool:
        return max(probs.values()) < self.unsure_below

    def _given(self, premise: str, hypothesis: str, probs: dict[str, float]) -> str:
        """Remember an answer (for a correction naming it); its answer id."""
        label = max(probs, key=probs.get)
        return self.recent.remember(Given(premise, hypothesis, label, self.version))

    # The JSON routes' handlers: the contract middleware (service/contract.py)
    # calls them with the body it parsed and validated, once.
    async def answer(self, pair: Pair) -> Answer:
        """One pair, answered as the tutorial's web app expects."""
        premise, hypothesis = pair.premise, pair.hypothesis
        [(probs, truncated)] = await self._infer([(premise, hypothesis)])
        unsure = self._unsure(probs)
        observe_answers(self.version, [probs], [unsure], [len(premise) + len(hypothesis)])
        answer_id = self._given(premise, hypothesis, probs)
        return tutorial_answer(
            premise, hypothesis, probs, truncated, self.version, answer_id, unsure
        )

    async def answer_batch(self, batch: Batch) -> BatchAnswer:
        """Several pairs: labels, probabilities and truncation, in request order."""
        pairs = batch.pairs
        named = await self._infer([(p.premise, p.hypothesis) for p in pairs])
        rows = [row for row, _ in named]
        unsure = [self._unsure(row) for row in rows]
        chars = [len(p.premise) + len(p.hypothesis) for p in pairs]
        observe_answers(self.version, rows, unsure, chars)
        results = [
            Result(
                label=max(row, key=row.get),
                probabilities=row,
                truncated=cut,
                answer_id=self._given(p.premise, p.hypothesis, row),
                unsure=doubt,
            )
            for p, (row, cut), doubt in zip(pairs, named, unsure, strict=True)
        ]
        return BatchAnswer(model_version=self.version, results=results)

    async def take_correction(self, c: Correction) -> Acknowledged:
        """A correction: the label that is right for an answer given (answer_id) or for a
        pair. 200 once it is committed to the feedback store, for review
        (`klue-nli feedback list`)."""
        row = await self.corrections.submit(c.label, c.answer_id, c.premise, c.hypothesis, c.note)
        return Acknowledged(feedback_id=row, status="pending")

    # The routes as BentoML declares them: the OpenAPI document and BentoML's clients see
    # these; over HTTP the contract middleware answers them with the handlers above.
    @bentoml.api(route="/api", input_spec=Pair)
    async def api(self, premise: str, hypothesis: str) -> Answer:
        """One pair, answered as the tutorial's web app expects."""
        return await self.answer(Pair.model_construct(premise=premise, hypothesis=hypothesis))

    @bentoml.api(route="/predict", input_spec=Batch)
    async def predict(self, pairs: list[Pair]) -> BatchAnswer:
        """Several pairs: labels, probabilities and truncation, in request order."""
        return await self.answer_batch(Batch.model_construct(pairs=pairs))

    @bentoml.api(route="/feedback", input_spec=Correction)
    async def feedback(
        self,
        label: str,
        answer_id: str | None = None,
        premise: str | None = None,
        hypothesis: str | None = None,
        note: str | None = None,
    ) -> Acknowledged:
        """A correction: the label that is right for an answer given (answer_id) or for a
        pair. 200 once it is committed to the feedback store, for review
        (`klue-nli feedback list`)."""
        fields = dict(answer_id=answer_id, premise=premise, hypothesis=hypothesis, note=note)
        return await self.take_correction(Correction.model_construct(label=label, **fields))


# Outermost first: each request timed by route, the security headers on every answer, the
# guard (host names, known paths), the arrival stamp, the size limit before
# anything reads a body, the corrections' rate limit, then the JSON contract.
NLIService.add_asgi_middleware(RequestMetrics, routes=KNOWN_PATHS)
NLIService.add_asgi_middleware(SecurityHeaders, page=PAGE)
NLIService.add_asgi_middleware(Guard, hosts=allowed_hosts(SERVE.allowed_hosts))
NLIService.add_asgi_middleware(Arrival)
NLIService.add_asgi_middleware(ServedHeader)
NLIService.add_asgi_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
NLIService.add_asgi_middleware(
    RateLimit,
    path="/feedback",
    per_minute=PARAMS.feedback.per_client_per_minute,
    store=FEEDBACK_STORE,
)
NLIService.add_asgi_middleware(JsonContract, routes=JSON_ROUTES)
