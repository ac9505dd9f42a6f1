"""How experiments are run: recipes (YAML overlays of params.yaml) as `dvc exp run -S`
arguments, the sweep and its ranking, a recipe run's record, and what DVC says is up to date."""
