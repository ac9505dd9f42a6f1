"""DVC stages, one module each: a function that does the work and returns its metrics, and a
thin main() that loads params.yaml (`python -m stages.<name>`, run by dvc.yaml)."""
