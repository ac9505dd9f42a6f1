"""Evaluation text kept out of training: one comparison key for a text, and the premises that
are copies of an evaluation premise, exact or near.

A correction sent from the page may be a dev pair with a space added, a full-width period or a
typo: it tokenizes to (nearly) the same ids, and trained on, it raises the dev accuracy that
promotion compares. So every comparison between sets goes through `text_key`, and a premise
whose character 3-grams overlap an evaluation premise's by at least
`data.near_duplicate_threshold` (Jaccard similarity) counts as that premise. Candidates come
from MinHash LSH (datasketch) and are confirmed by the exact Jaccard similarity, so the index
finds them without comparing every pair of texts and the threshold means what it says.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping

NGRAM = 3
NUM_PERM = 128
# LSH's S-curve is soft around its own threshold: candidates are gathered well below the
# threshold, then kept only if their exact similarity reaches it.
CANDIDATE_SHARE = 2 / 3


def text_key(text: str) -> str:
    """The text as compared between sets: NFKC (full-width letters, digits and punctuation
    folded to their usual forms), case-folded, whitespace collapsed and stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def shingles(text: str) -> frozenset[str]:
    """The character 3-grams of the key without its spaces (a space moved or doubled is
    the same text)."""
    key = text_key(text).replace(" ", "")
    return frozenset(key[i : i + NGRAM] for i in range(max(1, len(key) - NGRAM + 1)))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class NearDuplicates:
    """Named sets of premises (e.g. dev, out of domain) indexed for lookup: `match(text)` is
    the name of a set holding the text's key or a near-duplicate of it, else None."""

    def __init__(self, sets: Mapping[str, Iterable[str]], threshold: float) -> None:
        from datasketch import MinHashLSH

        self.threshold = threshold
        self._exact: dict[str, str] = {}
        self._shingles: dict[str, frozenset[str]] = {}
        self._lsh = MinHashLSH(threshold=threshold * CANDIDATE_SHARE, num_perm=NUM_PERM)
        for name, texts in sets.items():
            for text in texts:
                key = text_key(text)
                if key in self._exact:
                    continue
                self._exact[key] = name
                self._shingles[key] = shingles(text)
                self._lsh.insert(key, _minhash(self._shingles[key]))

    def match(self, text: str) -> str | None:
        key = text_key(text)
        if key in self._exact:
            return self._exact[key]
        grams = shingles(text)
        best, found = 0.0, None
        for candidate in self._lsh.query(_minhash(grams)):
            similarity = jaccard(grams, self._shingles[candidate])
            if similarity >= self.threshold and similarity > best:
                best, found = similarity, self._exact[candidate]
        return found


def _minhash(grams: frozenset[str]):
    from datasketch import MinHash

    minhash = MinHash(num_perm=NUM_PERM, seed=1)
    minhash.update_batch([g.encode("utf-8") for g in sorted(grams)])
    return minhash
