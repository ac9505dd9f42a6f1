"""Registry: MLflow tracking (runs, logged models), the model registry (register, promote by
policy, roll back, export to BentoML, retention) and model cards. Uses every layer below;
only entry points use it. `python -m klue_nli.registry <command>` runs its commands."""
