"""`python -m klue_nli.registry register | promote | rollback | show | export | gc`: the
registry's commands (what `make register`, `make promote`, ... run)."""

from __future__ import annotations

import argparse
import sys

from klue_nli.core.cli import apply_quiet_defaults
from klue_nli.core.errors import UserError
from klue_nli.core.params import PARAMS_FILE, load_params
from klue_nli.registry.client import CHAMPION, PREVIOUS, alias_version, client, version_metrics
from klue_nli.registry.retention import purge_artifacts, retire_old_versions
from klue_nli.registry.versions import comparison, export_champion, promote, register, rollback


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m klue_nli.registry", description="MLflow model registry commands"
    )
    parser.add_argument(
        "command", choices=["register", "promote", "rollback", "show", "export", "gc"]
    )
    parser.add_argument("--version", help="promote: the version to consider (default: newest)")
    parser.add_argument("--params", default=PARAMS_FILE)
    args = parser.parse_args(argv)
    apply_quiet_defaults()
    try:
        params = load_params(args.params)
        name = params.registry.model_name
        if args.command == "register":
            version = register(params)
            print(f"registered {name} version {version.version} (run {version.run_id})")
        elif args.command == "promote":
            before = alias_version(client(), name, CHAMPION)
            version, decision = promote(params, args.version)
            print(comparison(version, before))
            verdict = "PROMOTED to champion" if decision.promote else "NOT promoted"
            print(f"{name} v{version.version}: {verdict}: " + "; ".join(decision.reasons))
        elif args.command == "rollback":
            version = rollback(params)
            print(f"{name}: champion is version {version.version} again")
        elif args.command == "export":
            print(f"BentoML model {export_champion(params)}")
        elif args.command == "gc":
            gone = retire_old_versions(params)
            purge_artifacts([model_id for _, model_id in gone if model_id])
            kept = params.registry.keep_versions
            listed = ", ".join(f"v{v}" for v, _ in gone) or "none"
            print(
                f"{name}: deleted {len(gone)} version(s) and their artifacts: {listed} "
                f"(kept: the newest {kept}, champion and previous)"
            )
        else:
            c = client()
            for alias in (CHAMPION, PREVIOUS):
                v = alias_version(c, name, alias)
                print(f"{alias}: " + (f"v{v.version} {version_metrics(v)}" if v else "none"))
    except UserError as exc:
        print(f"registry: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
