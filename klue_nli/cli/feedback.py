"""`klue-nli feedback list | accept | reject | export`: reviewing corrections of the served
model's answers; only accepted ones leave the store, as the training pairs featurize reads.
`klue-nli monitor`: whether the served answers drifted from the champion's dev profile."""

from __future__ import annotations

import json

import click

from klue_nli.core.env import WEBHOOK_ENV
from klue_nli.core.params import PARAMS_FILE, Params, load_params

params_option = click.option(
    "--params", "params_file", default=PARAMS_FILE, show_default=True, help="the params file"
)


def _store(params: Params):
    from klue_nli.data.feedback import open_store

    return open_store(params)


@click.group()
def feedback() -> None:
    """Corrections of the served model's answers: review them, export the accepted ones."""


@feedback.command("list")
@click.option(
    "--status", type=click.Choice(["pending", "accepted", "rejected"]), help="only these rows"
)
@click.option("--limit", type=int, default=50, show_default=True, help="at most this many rows")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--full", is_flag=True, help="each correction's whole premise, hypothesis and note")
@params_option
def list_(status: str | None, limit: int, as_json: bool, full: bool, params_file: str) -> None:
    """The stored corrections (oldest first), and how many there are of each status. A line
    each shows the premise's first 40 characters; --full or --json show every text whole."""
    store = _store(load_params(params_file))
    for row in store.rows(status, limit):
        if as_json:
            shown = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}
            print(json.dumps(shown, ensure_ascii=False, sort_keys=True))
            continue
        said = f"{row['answered'] or '?'} -> {row['label']}"
        if not full:
            print(f"{row['id']:>6}  {row['status']:<8}  {said:<28}  {row['premise'][:40]!r}")
            continue
        print(f"{row['id']:>6}  {row['status']:<8}  {said}")
        for key in ("premise", "hypothesis", "note"):
            if row.get(key):
                print(f"        {key}: {row[key]!r}")
    counts = store.counts()
    click.echo(", ".join(f"{n} {status}" for status, n in counts.items()), err=True)


@feedback.command()
@click.argument("ids", nargs=-1, type=int, required=True)
@params_option
def accept(ids: tuple[int, ...], params_file: str) -> None:
    """Accept corrections by id: the next export trains on them."""
    n = _store(load_params(params_file)).review(ids, "accepted")
    print(f"accepted {n}")


@feedback.command()
@click.argument("ids", nargs=-1, type=int, required=True)
@params_option
def reject(ids: tuple[int, ...], params_file: str) -> None:
    """Reject corrections by id: they never leave the store."""
    n = _store(load_params(params_file)).review(ids, "rejected")
    print(f"rejected {n}")


@feedback.command()
@params_option
def export(params_file: str) -> None:
    """Write the accepted corrections to paths.feedback_pairs (featurize's input); pairs
    whose premise is a dev or out-of-domain test premise, or a near-duplicate of one, are left
    out (evaluation text only ever reports)."""
    from klue_nli.data.feedback import export_accepted

    params = load_params(params_file)
    counts = export_accepted(_store(params), params)
    left_out = ", ".join(f"{n} as {name}" for name, n in counts["left_out"].items())
    print(
        f"{params.paths.feedback_pairs}: {counts['pairs']} accepted pair(s)"
        + (f"; left out (copies of evaluation premises): {left_out}" if left_out else "")
    )


@click.command(short_help="Drift of the champion's answers from its dev profile (PSI).")
@click.option("--url", default="http://127.0.0.1:3000", show_default=True, help="the service")
@click.option(
    "--since",
    "state_file",
    metavar="FILE",
    help="compare only the answers since the check that wrote FILE (updated here)",
)
@click.option(
    "--min-answers",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="fewer new answers than this: no verdict",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=None,
    help="PSI over which it is drift [default: 0.2]",
)
@click.option(
    "--webhook",
    metavar="URL",
    envvar=WEBHOOK_ENV,
    help=f"POST the result as JSON to URL when it is drift (or ${WEBHOOK_ENV})",
)
@click.option("--json", "as_json", is_flag=True, help="the result as JSON")
@params_option
def monitor(
    url: str,
    state_file: str | None,
    min_answers: int,
    threshold: float | None,
    webhook: str | None,
    as_json: bool,
    params_file: str,
) -> None:
    """Drift of the served champion's answers (label shares, confidence) against its KLUE dev
    profile, by the population stability index: one line, or JSON."""
    from klue_nli.inference.drift import THRESHOLD
    from klue_nli.monitoring.drift_check import check, one_line
    from klue_nli.monitoring.webhook import notify

    params = load_params(params_file)
    result = check(url, params.registry.model_name, state_file, min_answers, threshold or THRESHOLD)
    print(json.dumps(result, sort_keys=True) if as_json else one_line(result))
    if webhook and result["drift"]:
        notify(webhook, result)


COMMANDS = (feedback, monitor)
