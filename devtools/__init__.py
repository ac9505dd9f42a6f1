"""Not product: local servers and scratch projects for the tests and benchmarks (sandbox), and
the team stack (`make team-up`: PostgreSQL, S3, MLflow and Prefect on loopback). Ships in no
wheel, MLflow model or Bento; nothing in klue_nli, stages, flows or service imports it."""
