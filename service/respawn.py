"""A crashed serving worker replaced within a second, not ten.

`bentoml serve` supervises its workers with a circus arbiter that looks for dead processes
only every `check_delay` seconds; BentoML builds it in one function,
`bentoml._internal.utils.circus.create_standalone_arbiter`, which gives its own `Arbiter`
class `check_delay` (10 s, no configuration option) by keyword, so a dead worker can go
unnoticed for ten seconds. The arbiter is built after the service's deployment hooks run, in
the same process, so a hook gives that class a `check_delay` of one second (the polling is
cheap; docs/reliability.md has the recovery time `make recovery` measures), and requests that
arrive meanwhile wait in the listening socket's backlog, which the arbiter keeps open.

This is the one place the project touches BentoML's internals. If the class moves or stops
taking the keyword, `prompt_respawn` fails with the versions installed and pinned, and
tests/e2e/test_service.py kills a worker under load and fails if the replacement is late.
"""

from __future__ import annotations

import functools
import inspect
from importlib.metadata import version

CHECK_DELAY_S = 1.0
PINNED = {"bentoml": "1.4.39"}  # constraints.txt: the version this seam is tested against


def prompt_respawn(check_delay_s: float = CHECK_DELAY_S) -> None:
    """Make every arbiter `bentoml serve` builds from now on in this process check its workers
    every `check_delay_s` seconds.

    `bentoml serve` binds `create_standalone_arbiter` before the service module (and so this
    hook) is loaded, so the function itself cannot be swapped; the class it builds, BentoML's
    own `Arbiter` subclass (the threaded one derives from it), gets the keyword instead."""
    try:
        from bentoml._internal.utils import circus as bento_circus

        arbiter = bento_circus.Arbiter
        source = inspect.getsource(bento_circus.create_standalone_arbiter)
        takes_keywords = any(
            p.kind is inspect.Parameter.VAR_KEYWORD
            for p in inspect.signature(arbiter.__init__).parameters.values()
        )
    except (ImportError, AttributeError, OSError, TypeError) as exc:
        raise RuntimeError(_moved(f"{type(exc).__name__}: {exc}")) from None
    if not takes_keywords or "check_delay=" not in source:
        raise RuntimeError(_moved("the arbiter no longer takes check_delay as a keyword"))
    original = arbiter.__init__
    if getattr(original, "__wrapped__", None) is not None:  # once per process
        return

    @functools.wraps(original)
    def init(self, *args, **kwargs) -> None:
        kwargs["check_delay"] = check_delay_s
        original(self, *args, **kwargs)

    arbiter.__init__ = init


def _moved(why: str) -> str:
    return (
        f"klue-nli service: BentoML {version('bentoml')} (the project pins "
        f"{PINNED['bentoml']}) no longer builds its arbiter as "
        f"service/respawn.py expects: {why}"
    )
