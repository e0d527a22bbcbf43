"""`ecomine demo` ends by saying how to serve what it trained: the command must match what local.yaml reads."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from ecomine.demo.run import _print_next_steps, serve_command

REPO = Path(__file__).resolve().parents[3]


def test_the_printed_command_points_local_yaml_at_the_demo_registry(tmp_path: Path) -> None:
    registry = tmp_path / "demo out" / "registry"
    cmd = serve_command(registry)
    assert cmd == f"ECOMINE_REGISTRY='{registry}' ecomine serve up serve_configs/local.yaml --blocking"
    assert "registry: ${ECOMINE_REGISTRY:-registry}" in (REPO / "serve_configs" / "local.yaml").read_text()
    buf = io.StringIO()
    _print_next_steps(Console(file=buf, width=80), registry, ["I00001", "I00002"])
    text = buf.getvalue()
    assert cmd in text and "curl -s localhost:8000/v1/models" in text
    assert '{"history": ["I00001", "I00002"], "k": 5}' in text
