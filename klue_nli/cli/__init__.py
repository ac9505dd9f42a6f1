"""`klue-nli`: the project's command-line tool (`klue-nli --help` lists its commands).

The Makefile's targets call it; the DVC stages stay `python -m stages.<name>`, as DVC users
expect. Bad arguments get one line and exit 2; a problem the user can fix (a missing
champion, a wrong params value) gets one line and exit 1; never a traceback.
"""

from __future__ import annotations

import sys

import click

from klue_nli.cli import feedback, pipeline, registry, tools
from klue_nli.core.env import apply_quiet_defaults
from klue_nli.core.errors import UserError


class InOrder(click.Group):
    """Commands listed as added (pipeline, registry, tools), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "terminal_width": 100}


@click.group(cls=InOrder, context_settings=SETTINGS, invoke_without_command=True)
@click.version_option(package_name="klue-nli-pipeline", prog_name="klue-nli")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """KLUE-NLI: recipes, the sweep, the Prefect flow, the model registry and its tools."""
    if ctx.invoked_subcommand is None:  # bare `klue-nli`: the usage, as asked for, exit 0
        click.echo(ctx.get_help())


for module in (pipeline, registry, feedback, tools):
    for command in module.COMMANDS:
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    apply_quiet_defaults()
    try:
        code = cli.main(args=argv, prog_name="klue-nli", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "klue-nli"
        print(f"{where}: error: {exc.format_message()}", file=sys.stderr)
        raise SystemExit(2) from None
    except click.ClickException as exc:
        print(f"klue-nli: error: {exc.format_message()}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        raise SystemExit(130) from None
    except UserError as exc:
        print(f"klue-nli: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)
