"""The original tutorial's serving style, as the baseline: a Flask app that encodes one pair,
padded to max length, and runs a batch-1 forward pass per request.

    python -m benchmarks.flask_app --model-dir DIR --port 5001
"""

from __future__ import annotations

import argparse

import torch
from flask import Flask, jsonify, request
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from klue_nli.core.labels import KOREAN_NAMES


def create_app(model_dir: str) -> Flask:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    app = Flask(__name__)

    def inference_fn(premise: str, hypothesis: str) -> dict:  # as in the tutorial
        inputs = tokenizer(
            [(premise, hypothesis)], max_length=64, padding="max_length", truncation=True
        )
        with torch.no_grad():
            outputs = model(**{k: torch.tensor(v) for k, v in inputs.items()})
            prob = outputs.logits.softmax(dim=1)
        probs = dict(zip(labels, prob[0].tolist(), strict=True))
        best = max(probs, key=probs.get)
        answer = {
            "premise": premise,
            "hypothesis": hypothesis,
            "prediction": f"{KOREAN_NAMES[best]} ({best})",
        }
        for label, p in probs.items():
            answer[f"{label}_data"] = f"{KOREAN_NAMES[label]} {p:.2f}"
            answer[f"{label}_width"] = f"{p * 100:.1f}%"
        return answer

    @app.get("/health")
    def health():
        return "ok"

    @app.post("/api")
    def api():
        body = request.get_json()
        return jsonify(inference_fn(body["premise"], body["hypothesis"]))

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    create_app(args.model_dir).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
