"""The service's Prometheus metrics, on `/metrics` (summed over workers): each request by
route and status (a path the service does not serve counts as one route, `other`, so no
client can add series: BentoML's own request metrics, labelled by the raw path, are off),
what each model call batched, how much of it was padding, how long requests queued, how long
the model ran. `make bench` reads them to split a request's time into HTTP, queue and model;
in production they show whether batching works.

BentoML's metrics are lazy proxies (created at first use, in the worker's multiprocess
registry), so declaring them here has no import-time effect.
"""

from __future__ import annotations

import time

import bentoml

from klue_nli.inference.drift import CONFIDENCE_BUCKETS

REQUEST_SECONDS = bentoml.metrics.Histogram(
    name="klue_nli_request_duration_seconds",
    documentation="Time from a request's arrival to its answer's last byte, by route and status",
    labelnames=["route", "code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_PAIRS = bentoml.metrics.Histogram(
    name="klue_nli_batch_pairs",
    documentation="Pairs per model call",
    buckets=(1, 2, 4, 8, 12, 16, 24, 32, 48, 64),
)
BATCH_TOKENS = bentoml.metrics.Histogram(
    name="klue_nli_batch_padded_tokens",
    documentation="Tokens per model call, padding included (pairs x the longest pair)",
    buckets=(32, 64, 128, 256, 512, 1024, 2048, 4096),
)
TOKENS = bentoml.metrics.Counter(
    name="klue_nli_tokens",
    documentation="Tokens fed to the model: real ones, and padded (real + padding)",
    labelnames=["kind"],
)
QUEUE_WAIT = bentoml.metrics.Histogram(
    name="klue_nli_queue_wait_seconds",
    documentation="Time a request waited for its model call to start",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# The earliest start of a worker since the service started (BentoML clears the metrics
# folder at start, so a restart is a new value): drift monitoring tells a restarted
# service's fresh counts from old ones by it.
STARTED = bentoml.metrics.Gauge(
    name="klue_nli_service_start_time_seconds",
    documentation="When the service started (its first worker), in seconds since the epoch",
    multiprocess_mode="min",
)
SERVED_VARIANT = bentoml.metrics.Gauge(
    name="klue_nli_served_variant",
    documentation="1 for the model version, runtime and precision each worker serves",
    labelnames=["model_version", "runtime", "quantize"],
    multiprocess_mode="max",
)
MODEL_SECONDS = bentoml.metrics.Histogram(
    name="klue_nli_model_seconds",
    documentation="Duration of one model call (tokenization, forward, softmax)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class BatchMetrics:
    """The MicroBatcher's observer: records each answered batch, and the tokens the
    predictor fed the model for it (the predictor counts them, this takes the difference)."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self._real = predictor.tokens_real
        self._padded = predictor.tokens_padded

    def __call__(self, pairs: int, waits: list[float], model_s: float) -> None:
        real = self.predictor.tokens_real - self._real
        padded = self.predictor.tokens_padded - self._padded
        self._real, self._padded = self.predictor.tokens_real, self.predictor.tokens_padded
        BATCH_PAIRS.observe(pairs)
        BATCH_TOKENS.observe(padded)
        TOKENS.labels(kind="real").inc(real)
        TOKENS.labels(kind="padded").inc(padded)
        for wait in waits:
            QUEUE_WAIT.observe(wait)
        MODEL_SECONDS.observe(model_s)


# What the model answers, per model version: the inputs of drift monitoring (klue-nli monitor
# compares them with the champion's dev figures). No text, only counts and sizes.
ANSWERS = bentoml.metrics.Counter(
    name="klue_nli_answers",
    documentation="Answers given, by model version and predicted label",
    labelnames=["model_version", "label"],
)
CONFIDENCE = bentoml.metrics.Histogram(
    name="klue_nli_answer_confidence",
    documentation="The predicted label's probability, by model version",
    labelnames=["model_version"],
    buckets=CONFIDENCE_BUCKETS,
)
UNSURE = bentoml.metrics.Counter(
    name="klue_nli_unsure_answers",
    documentation="Answers below the model's unsure threshold of confidence, by model version",
    labelnames=["model_version"],
)
INPUT_CHARS = bentoml.metrics.Histogram(
    name="klue_nli_input_chars",
    documentation="Characters of premise + hypothesis, by model version",
    labelnames=["model_version"],
    buckets=(16, 32, 64, 128, 256, 512, 1024, 2000),
)


def observe_answers(
    version: str, rows: list[dict[str, float]], unsure: list[bool], chars: list[int]
) -> None:
    """Count each answer's label, confidence, unsureness and input length under its model
    version."""
    for probs, doubt, n in zip(rows, unsure, chars, strict=True):
        label = max(probs, key=probs.get)
        ANSWERS.labels(model_version=version, label=label).inc()
        CONFIDENCE.labels(model_version=version).observe(probs[label])
        UNSURE.labels(model_version=version).inc(int(doubt))
        INPUT_CHARS.labels(model_version=version).observe(n)


def observe_variant(version: str, runtime: str, quantize: str) -> None:
    """What this worker serves (the model version, as evaluate measured it), and when it
    started."""
    SERVED_VARIANT.labels(model_version=version, runtime=runtime, quantize=quantize).set(1)
    STARTED.set(time.time())


class RequestMetrics:
    """ASGI middleware: every HTTP request's duration, labelled by its route (one of `routes`,
    else `other`) and status code: a bounded set of series whatever paths clients send."""

    def __init__(self, app, routes: frozenset[str]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        started = time.perf_counter()
        status = 500  # until the answer says otherwise (an app that raised sent none)

        async def timed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                elapsed = time.perf_counter() - started
                REQUEST_SECONDS.labels(route=route, code=str(status)).observe(elapsed)

        return await self.app(scope, receive, timed_send)


def exposition() -> tuple[bytes, str]:
    """/metrics: every worker's metrics (BentoML's multiprocess files), as Prometheus text."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
