"""The thin `main()` every stage shares: load params, run, print a summary or one error line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from klue_nli.core.env import apply_quiet_defaults
from klue_nli.core.errors import UserError
from klue_nli.core.params import PARAMS_FILE, Params, load_params


def run_stage(stage: Callable[[Params], dict[str, Any]], argv: list[str] | None = None) -> None:
    """Parse `--params`, run `stage` on the loaded params, print its summary as one JSON line;
    a UserError or an interrupt is one line on stderr and a non-zero exit."""
    name = stage.__name__
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=stage.__doc__)
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    apply_quiet_defaults()
    try:
        summary = stage(load_params(args.params))
    except UserError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"{name}: interrupted; no output was written", file=sys.stderr)
        raise SystemExit(130) from None
    if summary is not None:
        print(f"{name}: " + json.dumps(summary, ensure_ascii=False, sort_keys=True))
