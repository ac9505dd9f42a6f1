"""`make bench`'s pipeline section works in any order: after a recipe has rewritten the
checkout's params.yaml (as `make demo` leaves it), with the stand-ins named relative to the
checkout as the README writes them."""

from __future__ import annotations

import os

from benchmarks.run import bench_pipeline
from devtools.sandbox import make_project, project_env
from klue_nli.core.params import load_params
from klue_nli.experiments.overrides import apply_sets
from klue_nli.experiments.recipes import recipe_args
from tests.conftest import ROOT


def test_the_bench_pipeline_runs_after_a_recipe(tmp_path, klue_dir, kcbert, monkeypatch):
    checkout = make_project(ROOT, tmp_path / "checkout", project_env())
    monkeypatch.chdir(checkout)
    params_file = checkout / "params.yaml"
    apply_sets(params_file, recipe_args("demo", {}, params_file=params_file))
    assert load_params(params_file).train.freeze_layers == 4  # the demo's, uncommitted
    # the stand-in relative to the folder the bench is started from
    klue = os.path.relpath(klue_dir, checkout)
    work = tmp_path / "work"  # as the bench makes it
    work.mkdir()
    result = bench_pipeline(klue, kcbert, work, root=checkout)
    assert result["noop_repro_s"] > 0 and result["noop_flow_s"] > 0
