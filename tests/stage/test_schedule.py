"""The schedule's axes beyond the tutorial's: layer-wise learning-rate decay (the optimizer's
groups) and an exponential moving average of the weights (what train exports)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from klue_nli.data.encoding import load_tokenizer
from klue_nli.model.modeling import build_model
from klue_nli.model.module import fused_adamw, layer_depth, param_groups
from stages.download import download
from stages.featurize import featurize
from stages.train import train
from tests.conftest import default_params

LABELS = ("entailment", "contradiction", "neutral")


def tiny_model(kcbert: str, **train: object):
    params = default_params(
        model={
            "name_or_path": kcbert,
            "init": "random",
            "random": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3},
        },
        train=train,
    )
    tokenizer = load_tokenizer(kcbert, do_lower_case=False)
    return build_model(params.model, LABELS, tokenizer), params.train


def test_depth_of_each_parameter():
    assert layer_depth("bert.embeddings.word_embeddings.weight", 12) == 0
    assert layer_depth("model.bert.encoder.layer.0.attention.self.query.weight", 12) == 1
    assert layer_depth("electra.encoder.layer.11.output.dense.bias", 12) == 12
    assert layer_depth("classifier.dense.weight", 12) == 13
    assert layer_depth("bert.pooler.dense.weight", 12) == 13


def test_layer_decay_gives_each_depth_its_rate_and_off_keeps_two_groups(kcbert):
    model, cfg = tiny_model(kcbert, layer_decay=0.5, learning_rate=1e-4)
    groups = param_groups(model, cfg)
    rates = {g["name"]: g["lr"] for g in groups}
    # three layers: head at the full rate, layer 2 at half, ..., embeddings at 1/16
    assert rates["decay"] == pytest.approx(1e-4)
    assert rates["decay_depth3"] == pytest.approx(0.5e-4)
    assert rates["decay_depth1"] == pytest.approx(0.125e-4)
    assert rates["decay_depth0"] == pytest.approx(0.0625e-4)
    assert all(g["weight_decay"] == 0 for g in groups if g["name"].startswith("no_decay"))
    counted = sum(p.numel() for g in groups for p in g["params"])
    assert counted == sum(p.numel() for p in model.parameters())  # each parameter once

    model, cfg = tiny_model(kcbert, layer_decay=1.0, learning_rate=1e-4)
    groups = param_groups(model, cfg)
    assert [(g["name"], g["lr"]) for g in groups] == [("decay", 1e-4), ("no_decay", 1e-4)]


def test_adamw_is_fused_on_cpu_and_takes_the_loops_step(kcbert):
    """The fused kernel where the parameters' device has it, and the same update as the
    per-tensor loop (to float rounding) on the model's own groups."""
    model, cfg = tiny_model(kcbert, learning_rate=1e-3, weight_decay=0.01)
    groups = param_groups(model, cfg)
    assert fused_adamw(groups)
    meta = [{"params": [torch.nn.Parameter(torch.empty(2, device="meta"))]}]
    assert not fused_adamw(meta)

    for p in model.parameters():
        p.grad = torch.randn_like(p)
    copies = {}
    for fused in (True, False):
        twin = [{**g, "params": [p.detach().clone().requires_grad_() for p in g["params"]]}
                for g in groups]  # fmt: skip
        for g, t in zip(groups, twin, strict=True):
            for p, q in zip(g["params"], t["params"], strict=True):
                q.grad = p.grad.clone()
        optimizer = torch.optim.AdamW(twin, lr=cfg.learning_rate, fused=fused)
        for _ in range(3):
            optimizer.step()
        copies[fused] = torch.cat([p.flatten() for t in twin for p in t["params"]])
    start = torch.cat([p.detach().flatten() for g in groups for p in g["params"]])
    assert not torch.equal(copies[True], start)
    torch.testing.assert_close(copies[True], copies[False], rtol=1e-5, atol=1e-6)


def moved(folder, start: dict[str, torch.Tensor]) -> float:
    """How far the saved encoder weights are from where training started."""
    saved = load_file(folder / "model.safetensors")
    return sum(float((saved[k] - v).abs().sum()) for k, v in start.items() if k in saved)


@pytest.mark.slow
def test_an_ema_run_exports_the_average_not_the_last_weights(workdir, make_params, kcbert):
    """With a decay near 1 the average stays where the first step left it, so the exported
    weights have moved far less from the initial ones than a plain run's after 8 steps."""
    params = make_params()
    download(params)
    featurize(params)
    tokenizer = load_tokenizer("data/features/tokenizer")
    torch.manual_seed(params.seed)
    initial = build_model(params.model, LABELS, tokenizer)
    start = {k: v.detach().clone() for k, v in initial.state_dict().items()}

    plain = train(params)
    plain_moved = moved(workdir / "models/best", start)
    averaged = train(make_params(train={"ema_decay": 0.999999}))
    ema_moved = moved(workdir / "models/best", start)
    assert plain["steps"] == averaged["steps"] == 8
    assert 0 < ema_moved < 0.5 * plain_moved, (ema_moved, plain_moved)
