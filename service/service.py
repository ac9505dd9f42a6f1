"""BentoML service for the promoted (`champion`) KLUE-NLI model.

Two services: `NLIModel` holds the model and batches concurrent requests adaptively;
`NLIService` is the HTTP front: it validates input, calls the model and formats answers as
the tutorial's web app did, and serves the page at `/`.

    bentoml serve service.service:NLIService          # from the project root
"""

from __future__ import annotations

import asyncio
import unicodedata
from pathlib import Path
from typing import Annotated

import aiohttp
import bentoml
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from klue_nli.labels import KOREAN_NAMES
from klue_nli.params import load_params
from klue_nli.predictor import Predictor
from klue_nli.registry import BENTO_MODEL

# Serving knobs only (batching, request limits); the decorators below need them at import.
# What the model is (labels, tokenizer, max length) comes from the model folder itself.
SERVE = load_params(Path(__file__).resolve().parent.parent / "params.yaml").serve
PAGE = Path(__file__).resolve().parent / "static" / "index.html"


def _clean_text(value: str) -> str:
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ValueError("contains invalid Unicode (a lone surrogate)")
    value = unicodedata.normalize("NFC", value)
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in value):
        raise ValueError("contains control characters")
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


Text = Annotated[str, Field(max_length=SERVE.max_text_chars), AfterValidator(_clean_text)]


class Pair(BaseModel):
    """One premise/hypothesis pair (POST /api)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    premise: Text
    hypothesis: Text


class Batch(BaseModel):
    """Several pairs (POST /predict)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    pairs: list[Pair] = Field(min_length=1, max_length=SERVE.max_pairs_per_request)


@bentoml.service(name="klue-nli-model", workers=1)
class NLIModel:
    bento_model = bentoml.models.BentoModel(BENTO_MODEL)  # the latest export of the champion

    def __init__(self) -> None:
        model = self.bento_model  # resolved by BentoML to the stored model at run time
        self.predictor = Predictor.from_dir(model.path)
        self.version = model.info.labels.get("registry_version", "unknown")
        self.labels = list(self.predictor.labels)

    @bentoml.api(
        batchable=True,
        max_batch_size=SERVE.max_batch_size,
        max_latency_ms=SERVE.max_latency_ms,
    )
    def infer(self, pairs: list[list[str]]) -> list[list[float]]:
        probs = self.predictor.predict_proba([p[0] for p in pairs], [p[1] for p in pairs])
        return probs.tolist()

    @bentoml.api
    def info(self) -> dict:
        return {"model_version": self.version, "labels": self.labels}


ui = FastAPI()


@ui.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def tutorial_answer(premise: str, hypothesis: str, probs: dict[str, float]) -> dict:
    """The original web app's fields ("참 0.93", "93.0%"), plus raw probabilities."""
    best = max(probs, key=probs.get)
    answer: dict = {
        "premise": premise,
        "hypothesis": hypothesis,
        "prediction": f"{KOREAN_NAMES[best]} ({best})",
        "label": best,
        "probabilities": probs,
    }
    for label, p in probs.items():
        answer[f"{label}_data"] = f"{KOREAN_NAMES[label]} {p:.2f}"
        answer[f"{label}_width"] = f"{p * 100:.1f}%"
    return answer


@bentoml.service(name="klue-nli", http={"host": "127.0.0.1", "port": 3000})
@bentoml.asgi_app(ui, path="/")
class NLIService:
    model = bentoml.depends(NLIModel)

    def __init__(self) -> None:
        self._info: dict | None = None

    async def _info_cached(self) -> dict:
        if self._info is None:
            self._info = await self.model.to_async.info()
        return self._info

    async def _infer(self, pairs: list[list[str]]) -> list[list[float]]:
        # Under load the model worker sometimes drops a pooled keep-alive connection
        # (ServerDisconnectedError); inference is idempotent, so try again on a fresh one.
        for attempt in range(3):
            try:
                return await self.model.to_async.infer(pairs)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if attempt == 2:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    @bentoml.api(route="/api", input_spec=Pair)
    async def api(self, premise: str, hypothesis: str) -> dict:
        """One pair, answered as the tutorial's web app expects."""
        info = await self._info_cached()
        [probs] = await self._infer([[premise, hypothesis]])
        answer = tutorial_answer(premise, hypothesis, dict(zip(info["labels"], probs, strict=True)))
        answer["model_version"] = info["model_version"]
        return answer

    @bentoml.api(route="/predict", input_spec=Batch)
    async def predict(self, pairs: list[Pair]) -> dict:
        """Several pairs: labels and probabilities, in request order."""
        info = await self._info_cached()
        probs = await self._infer([[p.premise, p.hypothesis] for p in pairs])
        results = []
        for row in probs:
            named = dict(zip(info["labels"], row, strict=True))
            results.append({"label": max(named, key=named.get), "probabilities": named})
        return {"model_version": info["model_version"], "results": results}
