"""What every verb module of the CLI shares: the consoles, the one-line error, the common options, `--set`.

Sits at the bottom of `ecomine.cli`: `main` and each verb module import it, it imports
no verb. Reports are wide tables: when output goes to a file or a CI log (no terminal to
measure), rich would cut them at 80 columns and drop the figures, hence the fixed width.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from ecomine.specs import parse_overrides  # re-exported: every verb's --set

__all__ = ["console", "err_console", "CliError", "RegistryOpt", "TaskOpt", "parse_overrides"]

RegistryOpt = Annotated[str, typer.Option("--registry", help="registry root: folder or s3:// URI", envvar="ECOMINE_REGISTRY")]
TaskOpt = Annotated[str, typer.Option("--task", help="recommend | demand | risk")]

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


class CliError(Exception):
    """An error the CLI reports as one line (bad arguments, unusable input)."""
