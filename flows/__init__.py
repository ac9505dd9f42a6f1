"""The Prefect flows and their tasks: retraining (training.py) and the drift check
(monitor.py), loaded by their entrypoints (prefect.yaml, `klue-nli flow`, `klue-nli deploy`)."""
