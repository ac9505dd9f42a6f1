"""`python -m flows.cli` is `klue-nli` (for a checkout without the venv's script on PATH)."""

from flows.cli import main

main()
