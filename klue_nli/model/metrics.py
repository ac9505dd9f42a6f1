"""Classification metrics and the two reference baselines evaluate reports next to the model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.naive_bayes import MultinomialNB


def classification_report(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str], groups: Sequence[str]
) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1, confusion matrix (rows gold) and per-group accuracy."""
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, pred, labels=list(labels), zero_division=0
    )
    by_group = {}
    gold_arr, pred_arr, group_arr = np.asarray(gold), np.asarray(pred), np.asarray(groups)
    for group in sorted(set(groups)):
        mask = group_arr == group
        by_group[group] = {
            "accuracy": float(np.mean(gold_arr[mask] == pred_arr[mask])),
            "n": int(mask.sum()),
        }
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(gold, pred, labels=list(labels)).tolist(),
        "by_source": by_group,
        "n": len(gold),
    }


def majority_baseline(train_labels: Sequence[str], dev_labels: Sequence[str]) -> float:
    """Dev accuracy of always answering the most frequent training label."""
    majority, _ = Counter(train_labels).most_common(1)[0]
    return float(np.mean(np.asarray(dev_labels) == majority))


def hypothesis_only_baseline(
    tokenize: Callable[[str], list[str]],
    train_hypotheses: Sequence[str],
    train_labels: Sequence[str],
    dev_hypotheses: Sequence[str],
    dev_labels: Sequence[str],
) -> float:
    """Dev accuracy of naive Bayes over the hypothesis' word pieces alone: how much of the task
    annotation artefacts give away without reading the premise (Poliak et al., 2018)."""
    vectorizer = CountVectorizer(analyzer=tokenize)
    classifier = MultinomialNB().fit(vectorizer.fit_transform(train_hypotheses), train_labels)
    pred = classifier.predict(vectorizer.transform(dev_hypotheses))
    return float(np.mean(pred == np.asarray(dev_labels)))
