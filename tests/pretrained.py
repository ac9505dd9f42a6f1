"""A real pretrained checkpoint, built offline in seconds, and a task it transfers to.

No BERT weights can be downloaded here, and a 2-layer BERT cannot learn KLUE-NLI from 2,000
pairs (it stays near the hypothesis-only baseline, random init or not), so the real sample
cannot show transfer. The transfer test uses what can: an NLI task a tiny BERT learns,
written in KLUE's file format from the sample's real premises:

- entailment: the premise without its final punctuation;
- contradiction: "사실이 아니다: " + the premise;
- neutral: another premise.

The checkpoint is a tiny BERT with kcbert-base's real vocabulary, trained on that task over
one half of the premises and saved as kcbert-base is published (`BertForPreTraining`: encoder,
pooler and pretraining heads, no classifier) with its tokenizer. Fine-tuning and dev use the
other half, so the checkpoint has seen none of their premises.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import BertConfig, BertForPreTraining, BertForSequenceClassification

from klue_nli.data.encoding import encode_pairs, load_tokenizer, pad_batch
from klue_nli.data.klue import read_split, split_filename

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
TINY_INTERMEDIATE = 64
NEGATION = "사실이 아니다: "


def synthetic_pairs(premises: list[str]) -> list[dict]:
    """Three KLUE-format records per premise, one per label."""
    records = []
    for i, premise in enumerate(premises):
        other = premises[(i + 1) % len(premises)]
        for label, hypothesis in (
            ("entailment", premise.rstrip(".!? ")),
            ("contradiction", NEGATION + premise),
            ("neutral", other),
        ):
            records.append(
                {
                    "guid": f"synthetic-{len(records)}",
                    "source": "wikipedia",
                    "premise": premise,
                    "hypothesis": hypothesis,
                    "gold_label": label,
                }
            )
    return records


def premise_halves(klue_dir: Path) -> tuple[list[str], list[str]]:
    premises = sorted({e.premise for e in read_split(klue_dir, "train")})
    random.Random(0).shuffle(premises)
    half = len(premises) // 2
    return premises[:half], premises[half:]


def write_transfer_task(klue_dir: Path, dest: Path) -> Path:
    """A mirror folder (train/dev in KLUE's format) over the second half of the premises."""
    _, premises = premise_halves(klue_dir)
    cut = len(premises) * 3 // 4
    dest.mkdir(parents=True)
    for split, part in (("train", premises[:cut]), ("dev", premises[cut:])):
        text = json.dumps(synthetic_pairs(part), ensure_ascii=False)
        (dest / split_filename(split)).write_text(text, encoding="utf-8")
    return dest


def build_checkpoint(klue_dir: Path, kcbert: str, dest: Path, steps: int = 300) -> Path:
    """Pretrain a tiny BERT on the first half of the premises; save it as kcbert-base is."""
    torch.manual_seed(0)
    tokenizer = load_tokenizer(kcbert, do_lower_case=False)
    premises, _ = premise_halves(klue_dir)
    records = synthetic_pairs(premises)
    label_ids = {"entailment": 0, "contradiction": 1, "neutral": 2}
    enc = encode_pairs(
        tokenizer, [r["premise"] for r in records], [r["hypothesis"] for r in records], 64
    )
    labels = torch.tensor([label_ids[r["gold_label"]] for r in records])
    config = BertConfig.from_pretrained(kcbert)
    config.update({**TINY, "intermediate_size": TINY_INTERMEDIATE, "num_labels": 3})
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (16,), generator=generator).tolist()
        batch = pad_batch(
            [enc["input_ids"][i] for i in idx],
            [enc["token_type_ids"][i] for i in idx],
            tokenizer.pad_token_id,
        )
        loss = model(**batch, labels=labels[idx]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Published as kcbert-base is: the encoder in a pretraining model, no classifier.
    config = BertConfig.from_pretrained(kcbert)
    config.update({**TINY, "intermediate_size": TINY_INTERMEDIATE})
    published = BertForPreTraining(config)
    published.bert.load_state_dict(model.bert.state_dict())
    published.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest
