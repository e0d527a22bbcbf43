"""`ecomine monitor` bad input without a served app: one line naming it, exit 2."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from ecomine.cli import monitor as monitor_cli
from ecomine.cli.main import app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_url_is_one_line_and_exit_2() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(app, ["monitor", "--url", url, "--timeout", "2"])
    assert result.exit_code == monitor_cli.EXIT_BAD_INPUT == 2
    assert f"--url: cannot reach {url}/v1/drift" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_unknown_task_is_bad_input() -> None:
    result = CliRunner().invoke(app, ["monitor", "--task", "forecast"])
    assert result.exit_code == 2 and "--task: 'forecast' is not one of" in result.output


def test_help_states_the_exit_codes() -> None:
    text = " ".join(CliRunner().invoke(app, ["monitor", "--help"]).output.split())
    assert "0 no drift; 1 drift found" in text and "2 bad input" in text
