"""Command line: `python -m core [--store PATH] COMMAND ... [--format table|json|csv]`, on click.

A thin adapter: each command is one decorated function (in a module per topic) that calls one or
two core functions and prints a table (or JSON / CSV with --format). A user mistake prints one
sentence on stderr and exits with code 2.

Each command imports the core modules it needs inside its function: importing them all up front
pulls in pandas, scikit-learn and jieba and makes `--help` take seconds.
"""
from __future__ import annotations

import getpass  # noqa: F401  (tests replace getpass.getpass, which Console.local hands to commands)
import sys

import click

from ..errors import MMSError
# each topic module registers its commands on `app` when imported; `--help` lists them in this order
from . import models  # noqa: F401,I001
from . import labelling  # noqa: F401
from . import monitoring  # noqa: F401
from . import admin  # noqa: F401
from . import policy_alerts  # noqa: F401
from . import shadow  # noqa: F401
from . import serve  # noqa: F401
from .base import PROG, USER_ERROR, Call, Console, app, check_out_path, sentence
from .labelling import to_label

__all__ = ["Console", "USER_ERROR", "app", "check_out_path", "main", "to_label"]


def main(argv: list[str] | None = None, console: Console | None = None) -> int:
    """Run one command; its exit code. `console` is given by a server running a command line's
    command; without one, a command whose store a running server holds is sent to that server."""
    argv = sys.argv[1:] if argv is None else list(argv)
    call = Call(argv, console or Console.local(), local=console is None)
    try:
        return app.main(argv, prog_name=PROG, standalone_mode=False, obj=call) or 0
    except click.UsageError as e:
        print(sentence(e), file=call.console.err)
    except MMSError as e:
        print(f"error: {e}", file=call.console.err)
    except BrokenPipeError:
        return 0
    return USER_ERROR
