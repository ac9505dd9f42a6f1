"""The recipe records' table in README.md and docs/model.md: one column per recipe, rendered
from the records `klue-nli recipe NAME --run` wrote (paths.recipe_records); `make figures`
rewrites the blocks between the markers and tests/unit/test_docs.py fails when a block and its
records disagree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from devtools.refs import repo_ref
from klue_nli.core.io import atomic_write_text
from klue_nli.core.params import load_params
from klue_nli.model.behaviour import HARD

# Pages that show the records, between these markers; `make figures` rewrites the blocks
# (tests/unit/test_docs.py fails when a block and the records disagree).
PAGES = ("README.md", "docs/model.md")
START, END = "<!-- recipes:start -->\n", "<!-- recipes:end -->"
SHOWN = ("demo", "e5-full")  # the columns, in this order, where a record exists
BASIC = ("identity", "negation", "word_order", "negation_raises_contradiction")
# What a record's figures depend on: a later commit that changes any of these leaves the record
# older than the code it describes, and its column says so until the recipe is rerun.
TRAINING_CODE = ("klue_nli/data", "klue_nli/model", "klue_nli/network", "stages", "recipes")


def newer_code(commit: str, root: str | Path = ".") -> str | None:
    """The newest commit after `commit` that changed TRAINING_CODE (its hash's first 10
    digits, as records name commits), else None; "unknown" where `commit` is not in this
    checkout's history."""
    # Not %h: git's short hash grows with the repository, so a clone would render another page.
    proc = subprocess.run(
        ["git", "log", "-1", "--format=%H", f"{commit}..HEAD", "--", *TRAINING_CODE],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return "unknown"
    return proc.stdout.strip()[:10] or None


def load_records(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The records of SHOWN found in `folder` (paths.recipe_records), by recipe name, each
    with the records of its runs at other seeds (`NAME--seed=N.json`) under "other_seeds"."""
    found = {}
    for name in SHOWN:
        path = Path(folder) / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text(encoding="utf-8"))
            found[name]["other_seeds"] = [
                json.loads(p.read_text(encoding="utf-8"))
                for p in sorted(Path(folder).glob(f"{name}--seed=*.json"))
            ]
    return found


def _seeds(r: dict[str, Any]) -> str:
    """Dev accuracy of the recipe's runs at other seeds, and the mean with this column's."""
    others = r.get("other_seeds") or []
    if not others:
        return "not run"
    runs = [
        f"seed {o['sets']['seed']} {_pct(o['eval']['accuracy'])}"
        + ("" if o["commit"] == r["commit"] else f" (commit {o['commit']})")
        for o in others
    ]
    accuracies = [r["eval"]["accuracy"]] + [o["eval"]["accuracy"] for o in others]
    return (
        f"{', '.join(runs)}; mean of the {len(accuracies)} runs "
        f"**{_pct(sum(accuracies) / len(accuracies))}** ({r['eval']['n']:,} pairs each)"
    )


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _schedule(t: dict[str, Any]) -> str:
    """`5 epochs`, or the steps where train.max_steps ended the run first."""
    epochs = f"{t['epochs']} epochs"
    if "steps" not in t or "effective_batch_size" not in t:
        return epochs
    return f"{t['steps']:,} steps of {t['effective_batch_size']} ({epochs} at most)"


def _rows(r: dict[str, Any]) -> list[str]:
    t, e = r["train"], r["eval"]
    ood, behaviour, served = e.get("out_of_domain", {}), e.get("behaviour", {}), e["served"]
    hw = f"{r['cpus']} CPUs ({r['cpu'] or 'unknown model'})" + (
        f", {r['gpu']}" if r["gpu"] else ", no GPU"
    )
    passed = {k: _pct(v["pass_rate"]) for k, v in behaviour.items()}
    newer = newer_code(r["commit"])
    stale = (
        ""
        if newer is None
        else f"; **older than the code**: the training code changed after it (commit {newer})"
        if newer != "unknown"
        else "; its commit is not in this checkout's history"
    )
    return [
        f"{r['date']}, commit {r['commit']}, {hw}{stale}",
        f"{r['wall_s']:,.0f} s ({r['wall_s'] / 60:.1f} min; {r['wall_covers']})",
        f"{t['train_seconds']:,.0f} s, {_schedule(t)} at {t['train_examples_per_s']} "
        f"examples/s ({t['precision']})",
        f"{_pct(t['best_val_acc'])} ({t['val_records']:,} pairs)",
        f"**{_pct(e['accuracy'])}** / {_pct(e['macro_f1'])} ({e['n']:,} pairs)",
        _seeds(r),
        f"{_pct(e['baselines']['hypothesis_only'])} / {_pct(e['baselines']['majority'])}",
        f"{_pct(ood['accuracy'])} / {_pct(ood['macro_f1'])} ({ood['n']:,} pairs)"
        if ood
        else "not measured",
        f"{passed.get('overall', '-')}",
        ", ".join(
            f"{k.replace('_', ' ')} {passed[k]}"
            for k in (*BASIC, "punctuation_spacing")
            if k in passed
        ),
        ", ".join(f"{k.replace('_', ' ')} {passed[k]}" for k in HARD if k in passed),
        f"{served['runtime']} ({served['quantize']}): agreement "
        f"{_pct(served['argmax_agreement'])}, dev {_pct(served['accuracy'])} "
        f"({e['n']:,} pairs)",
        *_confidence_rows(e),
    ]


def _dev_file(e: dict[str, Any]) -> str:
    data = e.get("data", {})
    if "dev_bytes" not in data:
        return "not recorded (a run before the record named its dev file)"
    return (
        f"sha256 `{data['dev_sha256'][:12]}`, {data['dev_bytes']:,} bytes, "
        f"{data['dev_pairs']:,} pairs"
    )


def _confidence_rows(e: dict[str, Any]) -> list[str]:
    """Dev file; ECE before and after scaling, dev and out of domain; the unsure threshold."""
    calibration, unsure = e.get("calibration"), e.get("unsure")
    if not calibration or not unsure:
        missing = "not measured (a run before calibration)"
        return [_dev_file(e), missing, missing]
    ece = "; ".join(
        f"{name} {calibration[split]['ece_before']:.3f} → **{calibration[split]['ece']:.3f}**"
        for split, name in (("dev", "dev"), ("out_of_domain", "out of domain"))
    )
    dev = unsure["dev"]
    kept = "none" if dev["accuracy_kept"] is None else _pct(dev["accuracy_kept"])
    return [
        _dev_file(e),
        f"{ece} (T = {calibration['temperature']:.2f}, fitted on "
        f"{calibration['validation_pairs']:,} validation pairs)",
        f"below {unsure['below']:.2f}: dev answers kept {_pct(dev['coverage'])}, right "
        f"{kept} of them (target {_pct(unsure['target_accuracy'])} on validation)",
    ]


LABELS = (
    "run on",
    "wall time after the install",
    "training (validation included)",
    "validation accuracy (held out of the train file)",
    "**dev accuracy** / macro-F1",
    "dev accuracy at other seeds (`--set seed=N`)",
    "dev: hypothesis-only baseline / majority class",
    "out of domain: KorNLI's XNLI test, accuracy / macro-F1",
    "behaviour suite, overall (330 cases)",
    "the five basic capabilities",
    "the six hard ones",
    "served runtime: agreement with PyTorch, dev accuracy",
    "dev file the figures are on",
    "expected calibration error, before → after temperature scaling",
    "unsure answers (confidence below the threshold fitted on validation)",
)


def render(records: dict[str, dict[str, Any]], folder: str, up: str = "") -> str:
    """The markdown table of the records (one column per recipe), as the pages show it,
    naming each record in `folder` (relative to the project root) as a page `up` folders
    below the project names it."""
    names = [name for name in SHOWN if name in records]
    header = "| figure | " + " | ".join(f"`make {_target(n)}`" for n in names) + " |\n"
    header += "|---|" + "---|" * len(names) + "\n"
    columns = [_rows(records[n]) for n in names]
    body = "".join(
        f"| {label} | " + " | ".join(col[i] for col in columns) + " |\n"
        for i, label in enumerate(LABELS)
    )
    links = ", ".join(repo_ref(f"{folder}/{n}.json", up) for n in names)
    return header + body + f"\nEach column as its run wrote it: {links}.\n"


def _target(name: str) -> str:
    return {"e5-full": "run-e5"}.get(name, name)


def render_page(text: str, table: str) -> str:
    """`text` with the block between the markers replaced by `table`."""
    if START not in text:
        return text
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + table + END + tail


def page_table(page: str | Path, folder: str) -> str:
    """The table as `page` shows it."""
    return render(load_records(folder), folder, "../" * (len(Path(page).parts) - 1))


def write_pages() -> list[str]:
    """Rewrite the pages' record blocks from paths.recipe_records; the pages written."""
    folder = load_params().paths.recipe_records
    for page in PAGES:
        text = Path(page).read_text(encoding="utf-8")
        atomic_write_text(page, render_page(text, page_table(page, folder)))
    return list(PAGES)
