"""`klue-nli register | promote | rollback | show | export | gc`: the MLflow model registry."""

from __future__ import annotations

import click

from klue_nli.core.params import PARAMS_FILE, Params, load_params

params_option = click.option(
    "--params", "params_file", default=PARAMS_FILE, show_default=True, help="the params file"
)


def _params(params_file: str) -> Params:
    return load_params(params_file)


@click.command()
@params_option
def register(params_file: str) -> None:
    """Register the evaluated model (models/best) as a new version."""
    from klue_nli.registry.register import register as register_version

    params = _params(params_file)
    version = register_version(params)
    name = params.registry.model_name
    print(f"registered {name} version {version.version} (run {version.run_id})")


@click.command()
@click.option("--version", help="the version to consider (default: the newest)")
@click.option(
    "--allow-variant-change",
    is_flag=True,
    help="the candidate may be served on another runtime or precision than the champion",
)
@params_option
def promote(version: str | None, allow_variant_change: bool, params_file: str) -> None:
    """Make a version champion if the promotion policy of params.yaml holds."""
    from klue_nli.registry.client import CHAMPION, alias_version, client
    from klue_nli.registry.promotion import comparison
    from klue_nli.registry.promotion import promote as promote_version

    params = _params(params_file)
    name = params.registry.model_name
    before = alias_version(client(), name, CHAMPION)
    candidate, decision = promote_version(params, version, allow_variant_change)
    print(comparison(candidate, before))
    for check in decision.checks:
        print(f"  {check.line()}")
    verdict = "PROMOTED to champion" if decision.promote else "NOT promoted"
    print(f"{name} v{candidate.version}: {verdict}: " + "; ".join(decision.reasons))


@click.command()
@params_option
def rollback(params_file: str) -> None:
    """Make the previous champion the champion again."""
    from klue_nli.registry.promotion import rollback as rollback_version

    params = _params(params_file)
    version = rollback_version(params)
    print(f"{params.registry.model_name}: champion is version {version.version} again")


@click.command(short_help="The champion and the previous one: figures, serving, promotion checks.")
@params_option
def show(params_file: str) -> None:
    """The champion and the previous champion: their figures, how each is served, and every
    rule of its promotion with the figure it found and its verdict."""
    import json

    from klue_nli.registry.client import CHAMPION, PREVIOUS, alias_version, client, evidence
    from klue_nli.registry.promotion import CHECKS_TAG

    name, c = _params(params_file).registry.model_name, client()
    for alias in (CHAMPION, PREVIOUS):
        v = alias_version(c, name, alias)
        print(f"{alias}: " + (f"v{v.version} {evidence(v)}" if v else "none"))
        for check in json.loads(v.tags.get(CHECKS_TAG, "[]")) if v else []:
            verdict = "holds" if check["holds"] else "fails"
            print(f"  {check['rule']}: {check['figure']} ({verdict})")


@click.command()
@params_option
def export(params_file: str) -> None:
    """Copy the champion and its ONNX graph into the BentoML store (what serve serves)."""
    from klue_nli.registry.export import export_champion

    print(f"BentoML model {export_champion(_params(params_file))}")


@click.command()
@params_option
def gc(params_file: str) -> None:
    """Delete versions beyond registry.keep_versions, and their artifacts."""
    from klue_nli.registry.retention import purge_artifacts, retire_old_versions

    params = _params(params_file)
    gone = retire_old_versions(params)
    purge_artifacts([model_id for _, model_id in gone if model_id])
    listed = ", ".join(f"v{v}" for v, _ in gone) or "none"
    print(
        f"{params.registry.model_name}: deleted {len(gone)} version(s) and their artifacts: "
        f"{listed} (kept: the newest {params.registry.keep_versions}, champion and previous)"
    )


COMMANDS = (register, promote, rollback, show, export, gc)
