"""The three KLUE-NLI classes and how the tutorial's web app names them."""

KNOWN_LABELS: tuple[str, ...] = ("entailment", "contradiction", "neutral")

# Korean names shown by the original web app ("참 (entailment)" and so on).
KOREAN_NAMES: dict[str, str] = {"entailment": "참", "contradiction": "거짓", "neutral": "중립"}
