"""Model cards: the registry descriptions a person reads in the MLflow UI.

A version's description says what the model is and how far to trust it: the data (and its
hashes), the recipe, validation and dev metrics next to the baselines, and its lineage. The
registered model's description states the promotion and retention policy. Pure functions;
klue_nli/registry/register.py writes them.
"""

from __future__ import annotations

from klue_nli.core.params import RegistryParams
from klue_nli.registry.policy import rules

RECIPE_KEYS = (
    "model.name_or_path",
    "model.init",
    "train.batch_size",
    "train.learning_rate",
    "train.epochs",
    "train.max_steps",
    "featurize.max_seq_length",
    "seed",
)


def version_card(provenance: dict, report: dict, run_params: dict[str, str]) -> str:
    """Markdown for one model version."""
    data = report.get("data", {})
    per_class = report.get("per_class", {})
    lines = [
        "## KLUE-NLI model card",
        "",
        "**Task**: natural language inference on KLUE-NLI v1.1 (entailment, contradiction, "
        "neutral), Korean.",
        "",
        "### Data",
        f"- dev file sha256: `{data.get('dev_sha256', 'unknown')}`",
        f"- dev pairs dropped by the text rule: {data.get('dropped', 0)}; truncated to the "
        f"maximum length: {data.get('truncated', 0)}",
        *(f"- {k}: `{v}`" for k, v in sorted(provenance.items()) if k.startswith("dvc.")),
        "",
        "### Recipe",
        *(f"- {k}: `{run_params[k]}`" for k in RECIPE_KEYS if k in run_params),
        "",
        "### Metrics",
        f"- validation accuracy (picks the epoch): "
        f"{_num(provenance.get('best_checkpoint_val_acc'))}",
        f"- dev accuracy: {_num(report.get('accuracy'))}; macro-F1: {_num(report.get('macro_f1'))}",
        *(f"- dev F1 {label}: {_num(m.get('f1'))}" for label, m in per_class.items()),
        *(f"- baseline {k}: {_num(v)}" for k, v in sorted(report.get("baselines", {}).items())),
    ]
    ood = report.get("out_of_domain")
    if ood:
        lines.append(
            f"- out of domain ({ood.get('dataset')}, {ood.get('n')} pairs; reported only): "
            f"accuracy {_num(ood.get('accuracy'))}; macro-F1 {_num(ood.get('macro_f1'))}"
        )
    behaviour = report.get("behaviour", {})
    if behaviour.get("overall"):
        lines.append(f"- behaviour suite pass rate: {_num(behaviour['overall'].get('pass_rate'))}")
        lines += [
            f"  - {capability}: {_num(result.get('pass_rate'))} of {result.get('n')}"
            for capability, result in behaviour.items()
            if capability != "overall"
        ]
    served = report.get("served")
    if served:
        lines.append(
            f"- as served ({served.get('runtime', 'torch')}, quantize "
            f"{served.get('quantize')}): accuracy {_num(served.get('accuracy'))}, argmax "
            f"agreement with PyTorch fp32 {_num(served.get('argmax_agreement'))}"
        )
    lines += _calibration_lines(report)
    lines += [
        "",
        "### Lineage",
        f"- MLflow run: `{provenance.get('mlflow_run_id', 'unknown')}`",
        f"- git commit: `{provenance.get('git_commit', 'unknown')}`",
    ]
    return "\n".join(lines) + "\n"


# the sets evaluate measures calibration on, as the card names them
SPLITS = (("dev", "dev"), ("out_of_domain", "out of domain"))


def _calibration_lines(report: dict) -> list[str]:
    """The probabilities' calibration, the unsure threshold and the dev reliability diagram."""
    calibration, unsure = report.get("calibration"), report.get("unsure")
    if not calibration or not unsure:
        return ["", "### Calibration", "- not measured: run evaluate and register again"]
    lines = [
        "",
        "### Calibration",
        f"- temperature {calibration['temperature']:.3f}, fitted on "
        f"{calibration['validation_pairs']} validation pairs; ECE over {calibration['binning']}",
    ]
    for split, name in SPLITS:
        fig = calibration[split]
        lines.append(
            f"- {name} ({fig['pairs']} pairs): ECE {_num(fig['ece_before'])} before scaling, "
            f"{_num(fig['ece'])} after; Brier {_num(fig['brier_before'])} before, "
            f"{_num(fig['brier'])} after"
        )
    for split, name in SPLITS:
        kept = unsure[split]
        lines.append(
            f"- unsure below confidence {unsure['below']:.3f} (validation accuracy "
            f"{unsure['target_accuracy']} above it): {name} answers kept "
            f"{_num(kept['coverage'])}, right {_num(kept['accuracy_kept'])} of the time"
        )
    lines += ["", "Reliability on dev after scaling (confidence bin: accuracy, pairs):", "", "```"]
    for point in calibration["dev"]["reliability"]:
        bar = "#" * round(point["accuracy"] * 40)
        lines.append(
            f"{point['lower']:.2f}-{point['upper']:.2f} mean {point['confidence']:.2f} | "
            f"{bar:<40} {point['accuracy']:.2f} ({point['pairs']})"
        )
    return [*lines, "```"]


def policy_card(name: str, policy: RegistryParams) -> str:
    """Markdown for the registered model: how versions become champion and when they go."""
    return (
        "\n".join(
            [
                f"## {name}: KLUE-NLI classifiers trained by the klue-nli pipeline",
                "",
                "Aliases: `champion` is served (`make export`), `previous` is the champion it "
                "replaced (`klue-nli rollback`).",
                "",
                "### Promotion policy (params.yaml `registry`)",
                *(f"- {rule}" for rule in rules(policy)),
                "",
                "### Retention",
                f"- `make gc` keeps the newest {policy.keep_versions} versions and always "
                "`champion` and `previous`; older versions and their model artifacts are deleted.",
            ]
        )
        + "\n"
    )


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"
