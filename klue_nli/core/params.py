"""Typed, validated view of params.yaml.

params.yaml is the only configuration, and the only place a value is written: the frozen
pydantic models below type and check it (`extra="forbid"`, strict types, `Field` constraints)
and hold no defaults, so every key is in the file. A bad or missing value fails with one line
naming its dotted key, e.g. `train.batch_size: must be > 0, got -1`.

    klue-nli params [--schema]    # check params.yaml, or print its JSON Schema
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from klue_nli.core.errors import ParamsError
from klue_nli.core.labels import KNOWN_LABELS
from klue_nli.core.secrets import holds_password

PARAMS_FILE = "params.yaml"
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")


def _number(value: Any) -> Any:
    """PyYAML reads 5e-5 (no dot) as a string: accept any spelling of a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _listed(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# After the bounds, so the JSON Schema states them (exclusiveMinimum, maximum, ...).
AS_NUMBER = BeforeValidator(_number)
Positive = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class PathParams(Section):
    """Every file and folder the pipeline writes; dvc.yaml reads the same keys."""

    raw_dir: str
    features_dir: str
    model_dir: str
    checkpoints_dir: str
    train_live: str  # DVCLive: metrics.json + plots/metrics/**.tsv
    eval_metrics: str
    confusion: str
    reliability: str  # a folder: the reliability diagrams' bins (DVC plots), one file a curve
    risk_coverage: str  # accuracy of the answers kept as the confidence threshold rises
    sweep_table: str  # `make sweep`'s ranking (markdown), as its last run wrote it
    recipe_records: str  # a folder: NAME.json, what `klue-nli recipe NAME --run` measured
    feedback_store: str  # the SQLite file of the feedback store (no database_url)
    feedback_pairs: str  # the accepted feedback, exported: featurize trains on it

    @field_validator("*")
    @classmethod
    def _relative(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if Path(value).is_absolute():
            raise ValueError("must be relative")
        return value


def _no_password(value: str | None) -> str | None:
    """params.yaml travels (git, the MLflow run's parameters, the Bento): a password in it
    would too. The environment carries secrets instead."""
    if value is not None and holds_password(value):
        raise ValueError(
            "holds a password, which would travel with params.yaml (git, MLflow, the Bento): "
            "give it in the environment (docs/operations.md, Secrets)"
        )
    return value


def _mirror_value(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must be null or a folder/URL")
    return _no_password(value)


class KorNLIParams(Section):
    """KorNLI's XNLI pairs (klue_nli/data/kornli.py): the out-of-domain test set, and extra
    training pairs if asked."""

    base_url: Annotated[str, Field(min_length=1)]
    mirror: str | None  # as data.mirror: checksums waived, schema checked
    # xnli.dev.ko.tsv (2,490 pairs) joins the training pairs; never validation or dev.
    add_dev_to_train: bool

    _mirror = field_validator("mirror")(_mirror_value)
    _base = field_validator("base_url")(_no_password)


class DataParams(Section):
    base_url: Annotated[str, Field(min_length=1)]
    # A folder or URL standing in for base_url. Official checksums and counts are waived for
    # a mirror (its files may be subsets); the schema is still checked.
    mirror: str | None
    timeout_s: Annotated[float, Field(gt=0), AS_NUMBER]
    retries: Annotated[int, Field(ge=0)]
    backoff_s: Annotated[float, Field(ge=0), AS_NUMBER]
    # Share of the train file's premises (with all their pairs) held out to pick the best
    # epoch, so the dev file is only ever used to report and to decide promotion.
    val_fraction: Annotated[float, Field(gt=0, le=0.5), AS_NUMBER]
    # Train on about this many pairs of what validation leaves (null: all): whole premises,
    # chosen by `seed` in proportion to their label mix, so quick recipes train on real
    # training data and validation stays the same set whatever the size.
    train_pairs: Annotated[int, Field(gt=0)] | None
    # A training premise (an accepted correction) counts as a copy of an evaluation premise
    # (dev, out of domain, validation) at this Jaccard similarity of their character 3-grams
    # (klue_nli/data/overlap.py); such pairs never reach the features.
    near_duplicate_threshold: Annotated[float, Field(gt=0, le=1), AS_NUMBER]
    kornli: KorNLIParams

    _mirror = field_validator("mirror")(_mirror_value)
    _base = field_validator("base_url")(_no_password)


class RandomInitParams(Section):
    """Size of the randomly initialised BERT used when model.init is 'random' (offline demo)."""

    num_hidden_layers: Positive
    num_attention_heads: Positive  # before hidden_size, whose check reads it
    hidden_size: Positive
    intermediate_size: Positive

    @field_validator("hidden_size")
    @classmethod
    def _divisible(cls, value: int, info: ValidationInfo) -> int:
        heads = info.data.get("num_attention_heads")
        if heads and value % heads:
            raise ValueError(f"{value} is not a multiple of num_attention_heads ({heads})")
        return value


class ModelParams(Section):
    name_or_path: Annotated[str, Field(min_length=1)]
    # kcbert's vocabulary is cased, and lower-casing strips Hangul into jamo ([UNK]).
    do_lower_case: bool
    init: Literal["pretrained", "random"]
    # What the classifier head reads: the [CLS] pooler (BERT-style checkpoints) or the masked
    # mean of the last hidden state (how multilingual-e5 was trained; its pooler is not).
    pooling: Literal["cls", "mean"]
    random: RandomInitParams


class FeaturizeParams(Section):
    max_seq_length: Annotated[int, Field(ge=8)]
    batch_size: Positive
    # Guard against a tokenizer that silently maps Korean to [UNK] (docs/pipeline.md, featurize).
    max_unk_share: Annotated[float, Field(ge=0, le=1), AS_NUMBER]


class TrainParams(Section):
    batch_size: Positive
    learning_rate: Annotated[float, Field(gt=0, lt=1), AS_NUMBER]
    epochs: Positive
    warmup_ratio: Annotated[float, Field(ge=0, lt=1), AS_NUMBER]
    weight_decay: Annotated[float, Field(ge=0), AS_NUMBER]
    max_steps: int  # -1: all epochs; N: stop (and validate) after N steps, for smoke runs
    accelerator: str  # auto | cpu | gpu | cuda | mps | tpu
    devices: int | str
    strategy: str  # auto | ddp | ddp_spawn | fsdp | ...
    # machines in one run (torchrun --nnodes / SLURM), each running `devices` processes
    # (docs/operations.md)
    num_nodes: Positive
    precision: str  # auto: bf16-mixed where GPU or CPU computes bf16, else 32-true
    num_workers: Annotated[int, Field(ge=0)]
    group_by_length: bool
    # Keep the word-embedding matrix as pretrained: in multilingual-e5-small it is 96 M of the
    # 118 M parameters, so freezing it skips most of the gradient and optimiser work.
    freeze_embeddings: bool
    # Keep every embedding and the lowest N encoder layers as pretrained (0: none). Backward
    # then stops at layer N: fewer gradients to compute, not only fewer to apply.
    freeze_layers: Annotated[int, Field(ge=0)]
    # Layer-wise learning-rate decay: the top encoder layer (and the head) train at
    # learning_rate, each layer below at this factor of the one above, the embeddings
    # lowest (Clark et al., 2020). 1.0: every parameter at learning_rate.
    layer_decay: Annotated[float, Field(gt=0, le=1), AS_NUMBER]
    # Exponential moving average of the weights after each step (Lightning's
    # WeightAveraging): validation, the best checkpoint and the export use the average.
    # null: off; else the decay, e.g. 0.999.
    ema_decay: Annotated[float, Field(gt=0, lt=1), AS_NUMBER] | None
    # Stochastic weight averaging over the tail of the schedule: the equal-weight mean of the
    # weights after each step from this fraction of the steps on (e.g. 0.75: the last quarter).
    # null: off. One of ema_decay and swa_from at most.
    swa_from: Annotated[float, Field(gt=0, lt=1), AS_NUMBER] | None
    log_every_n_steps: Positive

    @field_validator("swa_from")
    @classmethod
    def _one_average(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("ema_decay") is not None:
            raise ValueError("one weight average at most: ema_decay is set too")
        return value

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value != -1 and value <= 0:
            raise ValueError(f"must be -1 or > 0, got {value}")
        return value

    @field_validator("accelerator", "precision")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        known = ACCELERATORS if info.field_name == "accelerator" else PRECISIONS
        if value not in known:
            raise ValueError(f"unknown {info.field_name} {value!r} (one of {', '.join(known)})")
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: int | str) -> int | str:
        if isinstance(value, str) and value != "auto":
            raise ValueError(f"unknown value {value!r} ('auto', -1 or a count)")
        if isinstance(value, int) and not (value > 0 or value == -1):
            raise ValueError(f"must be 'auto', -1 or > 0, got {value}")
        return value


class EvaluateParams(Section):
    batch_size: Positive
    # Score this many pairs of KorNLI's XNLI test file, from its start (null: all 5,010):
    # the out-of-domain figure. Shrunk params in the tests; the recipes read all.
    out_of_domain_pairs: Positive | None


class CalibrationParams(Section):
    """What the probabilities shown are checked and fitted for (network/calibration.py)."""

    # evaluate: expected calibration error over this many equal-width confidence bins
    bins: Annotated[int, Field(ge=2, le=100)]
    # train: the unsure threshold is the lowest confidence whose answers at or above it were
    # right this often on validation; the service calls an answer below it unsure
    target_accuracy: Annotated[float, Field(gt=0, le=1), AS_NUMBER]


class RegistryParams(Section):
    """MLflow model registry name and the promotion policy (see klue_nli/registry/policy.py)."""

    model_name: Annotated[str, Field(min_length=1)]
    # A candidate becomes champion only with dev accuracy > champion's + this margin (as
    # served: evaluate's `served.accuracy`; a tie keeps the champion) ...
    min_accuracy_gain: Annotated[float, Field(gt=-1, lt=1), AS_NUMBER]
    # ... if the served configuration (serve.runtime, serve.quantize) gives the trained
    # model's answer on at least this share of dev ...
    min_served_agreement: Annotated[float, Field(ge=0, le=1), AS_NUMBER]
    # ... and no per-class F1 more than this below the champion's ...
    max_f1_drop: Annotated[float, Field(ge=0, le=1), AS_NUMBER]
    # ... and, when set, a behaviour-suite pass rate (all capabilities) of at least this.
    min_behaviour_pass: Annotated[float, Field(ge=0, le=1), AS_NUMBER] | None
    # ... and, when set, a dev expected calibration error (as served) of at most this.
    max_ece: Annotated[float, Field(ge=0, le=1), AS_NUMBER] | None
    # `make gc`: versions kept (newest first); champion and previous are always kept
    keep_versions: Positive


class ServeParams(Section):
    """Serving knobs only; what the model is comes from the model itself, not from here."""

    # serving processes, each with its own model copy, batch queue and share of the CPUs. One
    # by default: BentoML hands each worker whatever connections it accepts, so one worker can
    # get every client of a load while another idles (docs/serving.md).
    workers: Positive
    max_batch_size: Positive  # adaptive batching: most pairs in one forward pass
    max_latency_ms: Positive  # adaptive batching: longest a request may wait queued
    # adaptive batching: how long a batch may wait for the clients the last batch answered
    # (at most half a batch's time; 0: start at once). docs/performance.md has the figures.
    batch_fill_ms: Annotated[float, Field(ge=0, le=1000), AS_NUMBER]
    max_pairs_per_request: Positive  # POST /predict
    max_text_chars: Positive  # per premise or hypothesis; longer text is refused (400)
    # int8: dynamic int8 quantization of the Linear layers when serving on CPU (ignored on a
    # GPU): faster than fp32, but its activation scales are per batch, so a pair's
    # probabilities move with whatever it is batched with (docs/performance.md); hence off by
    # default. evaluate reports it under `served`.
    # bf16: computed in bfloat16 on a CPU with AVX512-BF16 or AMX (runtime openvino or torch).
    # auto: bf16 where the runtime and the serving machine's CPU compute it natively, else
    # none; evaluate reports what it resolved to and how often it agrees with PyTorch fp32.
    quantize: Literal["none", "int8", "bf16", "auto"]
    # onnxruntime / openvino: the model's ONNX graph (stored by make export, else exported at
    # load) run by ONNX Runtime or OpenVINO on CPU (ignored on a GPU); torch: the PyTorch
    # model. make variants measures each (benchmarks/variants.json, docs/performance.md).
    runtime: Literal["onnxruntime", "openvino", "torch"]
    # Host names answered (a request naming another is refused: a page elsewhere that a DNS
    # rebinding points at this machine cannot post to it); "*" answers any. The container
    # image sets KLUE_NLI_ALLOWED_HOSTS instead (comma-separated).
    allowed_hosts: Annotated[tuple[str, ...], BeforeValidator(_listed), Field(min_length=1)]

    @field_validator("runtime")
    @classmethod
    def _quantize_the_runtime_runs(cls, runtime: str, info: ValidationInfo) -> str:
        quantize = info.data.get("quantize")
        if quantize == "bf16" and runtime == "onnxruntime":
            raise ValueError("quantize bf16 runs on openvino or torch; set serve.runtime")
        if quantize == "int8" and runtime == "openvino":
            raise ValueError("quantize int8 runs on onnxruntime or torch; set serve.runtime")
        return runtime


def _addresses(value: tuple[str, ...]) -> tuple[str, ...]:

    for item in value:
        try:
            ipaddress.ip_network(item)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return value


class FeedbackParams(Section):
    """Where corrections of the served model's answers are stored (klue_nli/data/feedback.py)."""

    # A SQLAlchemy URL (postgresql://... in team mode); null: SQLite at paths.feedback_store.
    # Without its password: PGPASSWORD or a passfile gives it (or the whole URL in
    # KLUE_NLI_FEEDBACK_URL).
    database_url: str | None
    # POST /feedback: corrections one client address may send in a minute (a token bucket of
    # this size, refilled evenly), so one script cannot flood the review queue
    per_client_per_minute: Positive
    # the answers a worker remembers (pair, label, model version; in memory, never logged),
    # so a correction can name the answer it corrects by its answer_id
    recent_answers: Positive
    # POST /feedback answers 503 (Retry-After) while this many corrections wait for review,
    # or this many were stored in the last hour, from every client together
    max_pending: Positive
    max_rows_per_hour: Positive
    # proxies (addresses or networks) whose X-Forwarded-For names the client; from any other
    # peer the header is ignored, so a client cannot pick its own rate-limit bucket
    trusted_proxies: Annotated[
        tuple[str, ...], BeforeValidator(_listed), AfterValidator(_addresses)
    ]

    _url = field_validator("database_url")(_no_password)


class Params(Section):
    seed: Annotated[int, Field(ge=0)]
    # Label order defines the class ids (0, 1, 2) of the model head.
    labels: Annotated[tuple[str, ...], BeforeValidator(_listed)]
    paths: PathParams
    data: DataParams
    model: ModelParams
    featurize: FeaturizeParams
    train: TrainParams
    evaluate: EvaluateParams
    calibration: CalibrationParams
    registry: RegistryParams
    feedback: FeedbackParams
    serve: ServeParams

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [label for label in labels if label not in KNOWN_LABELS]
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; known: {list(KNOWN_LABELS)}")
        if sorted(labels) != sorted(KNOWN_LABELS):
            raise ValueError(f"must list each of {list(KNOWN_LABELS)} exactly once")
        return labels

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


# --- loading -------------------------------------------------------------------------------

# pydantic's error types, said the way this project's messages always said them.
_EXPECTED = {
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "tuple_type": "expected a list",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}
_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _known_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = Params
    for part in loc:
        model = model.model_fields[part].annotation  # sections are plain model annotations
    return sorted(model.model_fields)


def _key_path(loc: tuple) -> tuple[str, ...]:
    """The params key of an error location: the field names, walked down the sections.
    What pydantic appends below a field (a union member such as `int` or `str`, a validator,
    a list index) is not part of the key; a name no section has is the unknown key itself."""
    model: type[BaseModel] | None = Params
    path: list[str] = []
    for part in loc:
        if model is None:  # below a leaf field: union members, validators, indices
            break
        path.append(str(part))
        field = model.model_fields.get(str(part))
        if field is None:  # an unknown key (extra_forbidden)
            break
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return tuple(path)


def _one_line(exc: ValidationError) -> str:
    """The first error as `dotted.key: what is wrong` (one error at a time)."""
    err = exc.errors(include_url=False)[0]
    loc = _key_path(err["loc"])
    key, kind, value = ".".join(loc), err["type"], err.get("input")
    if kind == "missing":
        return f"{key}: missing (params.yaml lists every key)"
    if kind == "extra_forbidden":
        return f"{key}: unknown key (known: {', '.join(_known_keys(loc[:-1]))})"
    if kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        return f"{key}: must be {op} {err['ctx'][name]}, got {value!r}"
    if kind in _EXPECTED:
        return f"{key}: {_EXPECTED[kind]}, got {value!r}"
    if kind == "literal_error":
        return f"{key}: must be {err['ctx']['expected']}, got {value!r}"
    if kind == "value_error":
        return f"{key}: {err['ctx']['error']}"
    return f"{key}: {err['msg']}"


def params_from_dict(raw: dict[str, Any]) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{PARAMS_FILE}: expected a mapping at the top level, got {raw!r}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_one_line(exc)) from None


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
    return params.model_dump(mode="json")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are kept as values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
