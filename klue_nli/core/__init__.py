"""Core: what every layer uses. params.yaml's typed schema, the one error type users see,
atomic writes, a model folder's checksums and file names, label names, the stage runner.
Imports no other layer of klue_nli."""
