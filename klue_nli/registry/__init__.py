"""Registry: MLflow tracking (runs, logged models), the model registry (register, promote by
policy, roll back, export to BentoML, retention) and model cards. Uses every layer below;
only entry points use it. `klue-nli register | promote | ...` runs its commands."""
