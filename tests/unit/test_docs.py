"""The README and docs/: every relative link resolves in the checkout, the README stays a
front door (at most 200 lines), and `mkdocs build --strict` builds the site with no warning."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from devtools import bench_figures, costs_table, reference
from devtools import records_table as records
from tests.conftest import ROOT, default_params

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); the target up to a space or ")"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path):
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(ROOT)}: broken links {missing}"


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("see [a](missing.md) and [b](https://example.com) and [c](#top)\n")
    assert relative_links(page) == ["missing.md"]


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)
    for page in sorted((ROOT / "docs").glob("*.md")):  # each page is in the README's index
        assert page.name == "index.md" or f"docs/{page.name}" in "\n".join(lines), page.name


@pytest.mark.parametrize("page", records.PAGES)
def test_recipe_figures_on_the_pages_are_the_records_runs_wrote(page: str):
    """The model tables of the README and docs/model.md are rendered from
    paths.recipe_records (`make figures`): a figure typed by hand, or a record changed
    without rendering again, fails here."""
    text = (ROOT / page).read_text(encoding="utf-8")
    assert records.START in text, f"{page}: no recipe figures block"
    block = text.split(records.START)[1].split(records.END)[0]
    folder = default_params().paths.recipe_records
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # the records folder is relative to the project root
        expected = records.page_table(page, folder)
    finally:
        os.chdir(cwd)
    assert block == expected, f"{page}: run `make figures`"
    assert set(records.load_records(ROOT / folder)) == set(records.SHOWN)


@pytest.mark.parametrize(("page", "up"), [("README.md", ""), ("docs/performance.md", "../")])
def test_the_performance_blocks_are_the_benchs_own_files(page, up):
    """The targets on the README and docs/performance.md are rendered from
    benchmarks/results.json and recovery.json (`make figures`); a figure typed by hand there
    fails here."""
    text = (ROOT / page).read_text(encoding="utf-8")
    assert bench_figures.START in text, f"{page}: no performance block"
    block = text.split(bench_figures.START)[1].split(bench_figures.END)[0]
    results, recovery = bench_figures.load(ROOT)
    assert block == bench_figures.render(results, recovery, up), f"{page}: run `make figures`"
    # and a changed figure changes the block: the check can fail
    results["targets"][0]["figure"] = results["targets"][0]["figure"] * 2 + 1
    assert bench_figures.render(results, recovery, up) != block


def test_the_reference_is_the_command_line_and_the_makefile_as_they_are():
    """docs/reference.md's blocks are `klue-nli ... --help` and the Makefile's help lines
    (`make figures`): a command, option or target added without the page fails here."""
    text = (ROOT / reference.PAGE).read_text(encoding="utf-8")
    for marks, expected in (
        (reference.CLI_MARKS, reference.render_cli()),
        (reference.MAKE_MARKS, reference.render_make(ROOT / "Makefile")),
    ):
        assert text.split(marks[0])[1].split(marks[1])[0] == expected, "run `make figures`"
    assert "### klue-nli feedback list" in text and "--dry-run" in text
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = {m.group(1) for line in makefile.splitlines() if (m := reference.TARGET.match(line))}
    assert {f"`make {t}`" for t in targets} <= set(re.findall(r"`make [\w-]+`", text))


def test_every_environment_variable_the_project_reads_is_in_the_reference():
    """A variable the code, the Makefile or prefect.yaml reads by name is in
    docs/reference.md's table (the ones the processes set for each other excepted)."""
    internal = {"KLUE_NLI_MLFLOW_RUN_ID", "KLUE_NLI_MODEL_CHECKED"}  # set for child processes
    named = set()
    for folder in ("klue_nli", "service", "flows", "stages", "benchmarks", "devtools"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            named |= set(
                re.findall(
                    r'"((?:KLUE_NLI|SOAK|BENCH)_[A-Z_]+|E5_MODEL|KCBERT_DIR|KORNLI_MIRROR)"', text
                )
            )
    named |= set(re.findall(r"\$(KLUE_NLI_[A-Z_]+)", (ROOT / "prefect.yaml").read_text()))
    table = (ROOT / reference.PAGE).read_text(encoding="utf-8").split("## Environment variables")[1]
    missing = sorted(v for v in named - internal if f"`{v}`" not in table)
    assert not missing, missing
    assert len(named) > 15, named  # the scan found them


def test_the_long_targets_costs_are_their_runs_own_files(tmp_path):
    """docs/start.md's costs table is rendered from the recipe records and the benchmarks'
    files (`make figures`); a time typed by hand there fails here."""
    text = (ROOT / costs_table.PAGE).read_text(encoding="utf-8")
    assert costs_table.START in text, "docs/start.md: no costs block"
    block = text.split(costs_table.START)[1].split(costs_table.END)[0]
    assert block == costs_table.page_block(ROOT), "run `make figures`"
    assert block.count("\n| `make ") == len(costs_table.SOURCES)
    # and a changed record changes the block: the check can fail
    (tmp_path / "metrics/recipes").mkdir(parents=True)
    demo = json.loads((ROOT / "metrics/recipes/demo.json").read_text(encoding="utf-8"))
    demo["wall_s"] += 60
    (tmp_path / "metrics/recipes/demo.json").write_text(json.dumps(demo), encoding="utf-8")
    assert "`make demo` | " + f"{demo['wall_s'] / 60:.1f} min" in costs_table.page_block(tmp_path)


def test_the_ways_of_training_are_the_train_speed_runs_own_file():
    """docs/performance.md's ways-of-training table is rendered from
    benchmarks/train_speed.json (`make figures`)."""
    text = (ROOT / bench_figures.SPEED_PAGE).read_text(encoding="utf-8")
    start, end = bench_figures.SPEED_START, bench_figures.SPEED_END
    assert start in text, "docs/performance.md: no train-speed block"
    block = text.split(start)[1].split(end)[0]
    speed = bench_figures.load_train_speed(ROOT)
    assert block == bench_figures.render_train_speed(speed), "run `make figures`"
    name = next(iter(speed["variants"]))
    speed["variants"][name]["examples_per_s"] += 1.0
    assert bench_figures.render_train_speed(speed) != block


@pytest.mark.parametrize(
    ("path", "render", "marks", "key"),
    [
        (bench_figures.RECOVERY, bench_figures.render_recovery, bench_figures.RECOVERY_MARKS,
         ("runs", 0, "recovery_s")),
        (bench_figures.SOAK, bench_figures.render_soak, bench_figures.SOAK_MARKS, ("requests",)),
        (bench_figures.CONTAINER, bench_figures.render_container, bench_figures.CONTAINER_MARKS,
         ("ready_s",)),
    ],
)  # fmt: skip
def test_the_reliability_figures_are_their_runs_own_files(path, render, marks, key):
    """docs/reliability.md's recovery table and soak line, and docs/serving.md's container
    line, are rendered from benchmarks/recovery.json, soak.json and container.json
    (`make figures`)."""
    page = bench_figures.SERVING_PAGE if path == bench_figures.CONTAINER else None
    text = (ROOT / (page or bench_figures.RELIABILITY_PAGE)).read_text(encoding="utf-8")
    start, end = marks
    assert start in text, f"no {start.strip()} block"
    block = text.split(start)[1].split(end)[0]
    figures = bench_figures.load_json(path, ROOT)
    assert block == render(figures), "run `make figures`"
    inner = figures
    for k in key[:-1]:
        inner = inner[k]
    inner[key[-1]] += 1
    assert render(figures) != block


def test_a_hand_edited_figure_is_seen(tmp_path):
    record = {
        "recipe": "demo", "date": "2026-12-03", "commit": "abc", "cpus": 2, "cpu": "X",
        "gpu": None, "wall_s": 600.0, "wall_covers": "x",
        "train": {"train_seconds": 400.0, "epochs": 2, "train_examples_per_s": 40.0,
                  "precision": "bf16-mixed", "best_val_acc": 0.7, "val_records": 1246},
        "eval": {"accuracy": 0.65, "macro_f1": 0.64, "n": 2400,
                 "baselines": {"hypothesis_only": 0.41, "majority": 1 / 3},
                 "served": {"runtime": "onnxruntime", "quantize": "none",
                            "argmax_agreement": 1.0, "accuracy": 0.65}},
    }  # fmt: skip
    table = records.render({"demo": record}, "metrics/recipes")
    assert "**65.0 %** / 64.0 % (2,400 pairs)" in table
    page = f"intro\n{records.START}{table}{records.END}\nmore\n"
    assert records.render_page(page, table) == page
    edited = page.replace("65.0 %", "67.0 %", 1)
    assert records.render_page(edited, table) == page != edited


def test_ci_runs_the_readmes_offline_test_command_as_written():
    """.ci/run runs the README's test command word for word, relative paths included, so a
    command that only works with absolute variables fails in CI."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("Without network access")[1].split("```bash\n")[1].split("```")[0]
    command = block.split("\n", 1)[1].strip()  # the second command: the tests
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    assert command.endswith("make test") and command in ci, (command, ci)


def test_a_record_older_than_the_training_code_says_so(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    # git shortens a hash to a length that grows with the repository (a fresh clone can print
    # one digit fewer than the checkout that rendered the page): the column names a fixed 10.
    git("config", "core.abbrev", "7")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages/train.py").write_text("a\n")
    git("add", "-A"), git("commit", "-qm", "run here")
    run_at = git("rev-parse", "--short", "HEAD")
    (tmp_path / "README.md").write_text("prose\n")
    git("add", "-A"), git("commit", "-qm", "docs only")
    assert records.newer_code(run_at, tmp_path) is None
    (tmp_path / "stages/train.py").write_text("b\n")
    git("add", "-A"), git("commit", "-qm", "training changed")
    assert records.newer_code(run_at, tmp_path) == git("rev-parse", "HEAD")[:10]
    assert records.newer_code("0123456789", tmp_path) == "unknown"


def test_the_bench_plot_on_the_site_is_the_benchs_own_file():
    copy = ROOT / bench_figures.PLOT_COPY
    assert copy.read_bytes() == (ROOT / bench_figures.PLOT).read_bytes(), "run `make figures`"


def test_make_container_checks_the_fields_the_service_answers_with():
    from devtools.container import SEED_FIELDS
    from service.answers import Answer

    assert set(SEED_FIELDS) <= set(Answer.model_fields)
    assert {f for f in Answer.model_fields if f.endswith(("_data", "_width"))} <= set(SEED_FIELDS)


def test_every_make_variable_a_user_can_set_is_in_the_reference():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    settable = set(re.findall(r"^([A-Z_]+) \?=", makefile, flags=re.M))
    reference = (ROOT / "docs/reference.md").read_text(encoding="utf-8")
    assert {"PORT", "FLOW_RECIPE", "SCREENSHOT_RECIPE"} <= settable
    assert not sorted(v for v in settable if f"`{v}`" not in reference)


def test_the_seed_runs_stand_beside_their_recipe_with_the_mean(tmp_path):
    base = {"commit": "c1", "eval": {"accuracy": 0.66, "n": 2400}}
    assert records._seeds(base) == "not run"
    base["other_seeds"] = [
        {"commit": "c1", "sets": {"seed": 8}, "eval": {"accuracy": 0.67}},
        {"commit": "c2", "sets": {"seed": 9}, "eval": {"accuracy": 0.68}},
    ]
    assert records._seeds(base) == (
        "seed 8 67.0 %, seed 9 68.0 % (commit c2); mean of the 3 runs **67.0 %** (2,400 pairs each)"
    )
    (tmp_path / "demo.json").write_text(json.dumps(base | {"other_seeds": []}))
    (tmp_path / "demo--seed=8.json").write_text(json.dumps(base["other_seeds"][0]))
    assert len(records.load_records(tmp_path)["demo"]["other_seeds"]) == 1
