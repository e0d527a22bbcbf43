"""The README's commands, run: what can run here in seconds runs, every documented command's --help works.

The README's fenced ```bash blocks are parsed; `RUN` lists the commands that need no
live cluster, no training and no network, each run as written from the repository
root (those that write, in a temporary folder); `HELP` lists every `ecomine`
command the README documents, whose `--help` must work. A listed command missing
from the README fails, and so does a README `ecomine` line no entry covers: the
README cannot drift from the code. The Python snippets compile and their imports
resolve (they call a live app, which the integration tests start).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
ECOMINE = str(Path(sys.executable).with_name("ecomine"))
SHARED_DATA = REPO.parent / "shared" / "data" / "online_retail"
SHARED_AMAZON = REPO.parent / "shared" / "data" / "amazon_5core"

# Run as written (a few seconds each). cwd "tmp": a fresh folder, for commands that write.
RUN: dict[str, str] = {
    "ecomine serve check serve_configs/local.yaml": "repo",
    "ecomine data synth --users 1000 --items 300 --days 365 --seed 0 --out synth/": "tmp",
    "ecomine registry list": "tmp",
    "ecomine data profile online-retail": "repo",  # needs the shared Online Retail files
    "ecomine data profile amazon-toys": "repo",  # needs the shared Amazon 5-core files
}

# Every ecomine command the README shows: `ecomine <command> --help` must work.
HELP: tuple[str, ...] = (
    "data profile", "data build", "data synth", "train", "evaluate", "ensemble build", "tune",
    "registry list", "registry show", "registry promote", "registry rollback",
    "serve check", "serve up", "serve status", "serve down", "monitor", "retrain", "score", "explain",
    "bench quality", "bench serve",
)


def _blocks(lang: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"^```{lang}\n(.*?)^```", README, re.S | re.M)]


def _command_lines() -> list[str]:
    """Each command of the bash blocks without its trailing comment (`a && b` counts both)."""
    out = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.extend(part.strip() for part in line.split("&&"))
    return out


COMMANDS = _command_lines()


def _ecomine_args(line: str) -> list[str] | None:
    words = [w for w in shlex.split(line) if "=" not in w or w.startswith("-")]  # drop VAR=... prefixes
    return words[1:] if words and words[0] == "ecomine" else None


def test_the_readme_has_bash_blocks_and_every_listed_command() -> None:
    assert len(COMMANDS) > 20
    missing = [c for c in RUN if c not in COMMANDS]
    assert missing == [], f"listed in RUN but not in README.md: {missing}"
    shown = {" ".join(a[:2]) for a in filter(None, map(_ecomine_args, COMMANDS))} | {
        a[0] for a in filter(None, map(_ecomine_args, COMMANDS))}
    assert [h for h in HELP if h not in shown] == [], "listed in HELP but not in README.md"


def test_every_ecomine_line_of_the_readme_is_covered() -> None:
    uncovered = []
    for line in COMMANDS:
        args = _ecomine_args(line)
        if args and not any(args[: len(h.split())] == h.split() for h in HELP):
            uncovered.append(line)
    assert uncovered == [], f"README commands no HELP entry covers (add them): {uncovered}"


@pytest.mark.parametrize("command", list(RUN))
def test_readme_command_runs(command: str, tmp_path: Path) -> None:
    if "online-retail" in command and not SHARED_DATA.is_dir():
        pytest.skip(f"the shared Online Retail files are absent ({SHARED_DATA})")
    if "amazon-" in command and not SHARED_AMAZON.is_dir():
        pytest.skip(f"the shared Amazon 5-core files are absent ({SHARED_AMAZON})")
    args = [ECOMINE, *shlex.split(command)[1:]]
    cwd = REPO if RUN[command] == "repo" else tmp_path
    env = {**os.environ, "ECOMINE_REGISTRY": str(tmp_path / "registry"), "NO_COLOR": "1"}
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if "serve check" in command:  # on an empty registry: one line naming the arm, the stage and the fix
        assert r.returncode == 2, (command, r.stdout[-2000:], r.stderr[-2000:])
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "application 'ecomine': recommend.champion.version: stage 'production' of task 'recommend' holds no version" in r.stderr
        assert "ecomine registry promote VERSION production --task recommend" in r.stderr
        r = subprocess.run([*args, "--no-registry"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (command, r.stdout[-2000:], r.stderr[-2000:])
    if "data synth" in command:
        assert (tmp_path / "synth" / "events.parquet").is_file()
    if "data profile" in command:
        assert "rows" in r.stdout.lower()


@pytest.mark.parametrize("command", HELP)
def test_documented_command_has_help(command: str) -> None:
    from typer.testing import CliRunner

    from ecomine.cli.main import app

    r = CliRunner().invoke(app, [*command.split(), "--help"])
    assert r.exit_code == 0, (command, r.output[-2000:])
    assert "Usage" in r.output


def test_python_snippets_compile_and_import() -> None:
    snippets = _blocks("python")
    assert snippets, "README.md has no ```python block"
    for code in snippets:
        tree = compile(code, "README.md", "exec", dont_inherit=True, flags=0x400)  # ast.PyCF_ONLY_AST
        imports = [line for line in code.splitlines() if re.match(r"(from \S+ )?import ", line)]
        exec("\n".join(imports), {})
        assert tree is not None
