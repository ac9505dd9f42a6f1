"""Shared code of the KLUE-NLI pipeline: params, labels, pair encoding, features, model,
Lightning wiring, the Predictor and MLflow conventions. Stages, flows and the service import it."""
