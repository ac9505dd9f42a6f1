"""`python -m klue_nli.cli` is `klue-nli` (for a checkout without the venv's script on PATH)."""

from klue_nli.cli import main

main()
