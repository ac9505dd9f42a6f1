"""Data: KLUE-NLI's files (download, parse, validate), text cleaning, tokenization and the
feature cache train reads. Uses core only."""
