"""Typed, validated view of params.yaml.

params.yaml is the only configuration. It is loaded into the frozen dataclasses below; the
defaults here are the original tutorial's recipe (tests check that the committed params.yaml
equals them), and every bad value fails with one line naming its key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from klue_nli.errors import ParamsError
from klue_nli.labels import KNOWN_LABELS

PARAMS_FILE = "params.yaml"
OFFICIAL_BASE_URL = (
    "https://raw.githubusercontent.com/KLUE-benchmark/KLUE/main/klue_benchmark/klue-nli-v1.1"
)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ParamsError(f"{key}: {message}")


@dataclass(frozen=True)
class PathParams:
    """Every file and folder the pipeline writes; dvc.yaml reads the same keys."""

    raw_dir: str = "data/raw"
    features_dir: str = "data/features"
    model_dir: str = "models/best"
    checkpoints_dir: str = "models/checkpoints"
    train_metrics: str = "metrics/train.json"
    eval_metrics: str = "metrics/eval.json"
    train_curve: str = "plots/train_steps.csv"
    val_curve: str = "plots/val_epochs.csv"
    confusion: str = "plots/confusion.csv"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _require(bool(value.strip()), f"paths.{f.name}", "must not be empty")
            _require(not Path(value).is_absolute(), f"paths.{f.name}", "must be relative")


@dataclass(frozen=True)
class DataParams:
    base_url: str = OFFICIAL_BASE_URL
    # A folder or URL standing in for base_url. Official checksums and counts are waived for
    # a mirror (its files may be subsets); the schema is still checked.
    mirror: str | None = None
    timeout_s: float = 30.0
    retries: int = 4
    backoff_s: float = 1.0
    # Share of the train file's premises (with all their pairs) held out to pick the best
    # epoch, so the dev file is only ever used to report and to decide promotion.
    val_fraction: float = 0.05

    def __post_init__(self) -> None:
        _require(
            0 < self.val_fraction <= 0.5,
            "data.val_fraction",
            f"must be in (0, 0.5], got {self.val_fraction}",
        )
        _require(self.timeout_s > 0, "data.timeout_s", f"must be > 0, got {self.timeout_s}")
        _require(self.retries >= 0, "data.retries", f"must be >= 0, got {self.retries}")
        _require(self.backoff_s >= 0, "data.backoff_s", f"must be >= 0, got {self.backoff_s}")
        _require(bool(self.base_url.strip()), "data.base_url", "must not be empty")
        if self.mirror is not None:
            _require(bool(self.mirror.strip()), "data.mirror", "must be null or a folder/URL")


@dataclass(frozen=True)
class RandomInitParams:
    """Size of the randomly initialised BERT used when model.init is 'random' (offline demo)."""

    num_hidden_layers: int = 2
    hidden_size: int = 128
    num_attention_heads: int = 2
    intermediate_size: int = 512

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _require(value > 0, f"model.random.{f.name}", f"must be > 0, got {value}")
        _require(
            self.hidden_size % self.num_attention_heads == 0,
            "model.random.hidden_size",
            f"{self.hidden_size} is not a multiple of num_attention_heads "
            f"({self.num_attention_heads})",
        )


@dataclass(frozen=True)
class ModelParams:
    name_or_path: str = "beomi/kcbert-base"
    # kcbert's vocabulary is cased, and lower-casing strips Hangul into jamo ([UNK]).
    do_lower_case: bool = False
    init: str = "pretrained"
    random: RandomInitParams = field(default_factory=RandomInitParams)

    def __post_init__(self) -> None:
        _require(bool(self.name_or_path.strip()), "model.name_or_path", "must not be empty")
        _require(
            self.init in ("pretrained", "random"),
            "model.init",
            f"must be 'pretrained' or 'random', got {self.init!r}",
        )


@dataclass(frozen=True)
class FeaturizeParams:
    max_seq_length: int = 64
    batch_size: int = 1000
    # Guard against a tokenizer that silently maps Korean to [UNK] (see README).
    max_unk_share: float = 0.01

    def __post_init__(self) -> None:
        _require(
            self.max_seq_length >= 8,
            "featurize.max_seq_length",
            f"must be >= 8, got {self.max_seq_length}",
        )
        _require(self.batch_size > 0, "featurize.batch_size", f"must be > 0, got {self.batch_size}")
        _require(
            0 <= self.max_unk_share <= 1,
            "featurize.max_unk_share",
            f"must be in [0, 1], got {self.max_unk_share}",
        )


@dataclass(frozen=True)
class TrainParams:
    batch_size: int = 32
    learning_rate: float = 5e-5
    epochs: int = 5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_steps: int = -1  # -1: all epochs; N: stop (and validate) after N steps, for smoke runs
    accelerator: str = "auto"  # auto | cpu | gpu | cuda | mps | tpu
    devices: int | str = "auto"
    strategy: str = "auto"  # auto | ddp | ddp_spawn | fsdp | ...
    precision: str = "auto"  # auto: bf16-mixed on a GPU, 32-true elsewhere
    num_workers: int = 0
    group_by_length: bool = False
    log_every_n_steps: int = 10

    def __post_init__(self) -> None:
        _require(self.batch_size > 0, "train.batch_size", f"must be > 0, got {self.batch_size}")
        _require(
            0 < self.learning_rate < 1,
            "train.learning_rate",
            f"must be in (0, 1), got {self.learning_rate}",
        )
        _require(self.epochs > 0, "train.epochs", f"must be > 0, got {self.epochs}")
        _require(
            0 <= self.warmup_ratio < 1,
            "train.warmup_ratio",
            f"must be in [0, 1), got {self.warmup_ratio}",
        )
        _require(
            self.weight_decay >= 0,
            "train.weight_decay",
            f"must be >= 0, got {self.weight_decay}",
        )
        _require(
            self.max_steps == -1 or self.max_steps > 0,
            "train.max_steps",
            f"must be -1 or > 0, got {self.max_steps}",
        )
        _require(
            self.accelerator in ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
            "train.accelerator",
            f"unknown accelerator {self.accelerator!r}",
        )
        if isinstance(self.devices, int):
            _require(
                self.devices > 0 or self.devices == -1,
                "train.devices",
                f"must be 'auto', -1 or > 0, got {self.devices}",
            )
        else:
            _require(self.devices == "auto", "train.devices", f"unknown value {self.devices!r}")
        _require(
            self.precision
            in ("auto", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true"),
            "train.precision",
            f"unknown precision {self.precision!r}",
        )
        _require(
            self.num_workers >= 0, "train.num_workers", f"must be >= 0, got {self.num_workers}"
        )
        _require(
            self.log_every_n_steps > 0,
            "train.log_every_n_steps",
            f"must be > 0, got {self.log_every_n_steps}",
        )


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = 64

    def __post_init__(self) -> None:
        _require(self.batch_size > 0, "evaluate.batch_size", f"must be > 0, got {self.batch_size}")


@dataclass(frozen=True)
class RegistryParams:
    """MLflow model registry name and the promotion policy (see klue_nli/registry.py)."""

    model_name: str = "klue-nli"
    # A candidate becomes champion only with dev accuracy >= champion's + this margin ...
    min_accuracy_gain: float = 0.0
    # ... and no per-class F1 more than this below the champion's.
    max_f1_drop: float = 0.02
    # ... and, when set, a behaviour-suite pass rate (all capabilities) of at least this.
    min_behaviour_pass: float | None = None

    def __post_init__(self) -> None:
        if self.min_behaviour_pass is not None:
            _require(
                0 <= self.min_behaviour_pass <= 1,
                "registry.min_behaviour_pass",
                f"must be null or in [0, 1], got {self.min_behaviour_pass}",
            )
        _require(bool(self.model_name.strip()), "registry.model_name", "must not be empty")
        _require(
            -1 < self.min_accuracy_gain < 1,
            "registry.min_accuracy_gain",
            f"must be in (-1, 1), got {self.min_accuracy_gain}",
        )
        _require(
            0 <= self.max_f1_drop <= 1,
            "registry.max_f1_drop",
            f"must be in [0, 1], got {self.max_f1_drop}",
        )


@dataclass(frozen=True)
class ServeParams:
    """Serving knobs only; what the model is comes from the model itself, not from here."""

    workers: int = 2  # serving processes, each with its own model copy and batch queue
    max_batch_size: int = 32  # adaptive batching: most pairs in one forward pass
    max_latency_ms: int = 1000  # adaptive batching: longest a request may wait in the queue
    max_pairs_per_request: int = 64  # POST /predict
    max_text_chars: int = 1000  # per premise or hypothesis; longer text is refused (400)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _require(value > 0, f"serve.{f.name}", f"must be > 0, got {value}")


@dataclass(frozen=True)
class Params:
    seed: int = 7
    # Label order defines the class ids (0, 1, 2) of the model head.
    labels: tuple[str, ...] = KNOWN_LABELS
    paths: PathParams = field(default_factory=PathParams)
    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=ModelParams)
    featurize: FeaturizeParams = field(default_factory=FeaturizeParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    registry: RegistryParams = field(default_factory=RegistryParams)
    serve: ServeParams = field(default_factory=ServeParams)

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        unknown = [label for label in self.labels if label not in KNOWN_LABELS]
        _require(not unknown, "labels", f"unknown label(s) {unknown}; known: {list(KNOWN_LABELS)}")
        _require(
            sorted(self.labels) == sorted(KNOWN_LABELS),
            "labels",
            f"must list each of {list(KNOWN_LABELS)} exactly once, got {list(self.labels)}",
        )

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


# --- loading -------------------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint)).replace("NoneType", "null")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the annotation `hint`; return it converted where lossless."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ParamsError:
                continue
        names = " or ".join(_type_name(o) for o in options)
        raise ParamsError(f"{key}: expected {names}, got {value!r}")
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(hint)
        _require(isinstance(value, list | tuple), key, f"expected a list, got {value!r}")
        return tuple(_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        _require(isinstance(value, dict), key, f"expected a mapping, got {value!r}")
        return _build(hint, value, key + ".")
    if hint is bool:
        _require(isinstance(value, bool), key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        _require(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"expected an integer, got {value!r}",
        )
        return value
    if hint is float:
        # PyYAML reads 5e-5 (no dot) as a string; accept any spelling of a number.
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        _require(
            isinstance(value, int | float) and not isinstance(value, bool),
            key,
            f"expected a number, got {value!r}",
        )
        return float(value)
    if hint is str:
        _require(isinstance(value, str), key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {hint!r} for {key}")  # a bug here, not user input


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ParamsError(f"{prefix}{key}: unknown key (known: {', '.join(sorted(known))})")
    kwargs = {name: _coerce(raw[name], hints[name], prefix + name) for name in known & raw.keys()}
    return cls(**kwargs)


def params_from_dict(raw: dict[str, Any]) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{PARAMS_FILE}: expected a mapping at the top level, got {raw!r}")
    return _build(Params, raw)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    return params_from_dict(raw or {})


def params_to_dict(params: Params) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), as it would be written to params.yaml."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(params))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are kept as values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
