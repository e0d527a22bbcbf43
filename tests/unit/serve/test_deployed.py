"""Control verbs act where `ecomine serve up` deployed, and refuse an address it did not (ecomine.serve.deployed).

No Ray here: every refusal happens before any connection, which is the point - a second Ray
on the same host is never touched by a plain `ecomine serve down`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ecomine.serve.control import ServeConfigError
from ecomine.serve.deployed import Deployment, forget, normalise, recorded, remember, state_file, target


@pytest.fixture()
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ECOMINE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_a_record_is_kept_replaced_and_forgotten(state: Path) -> None:
    assert recorded() == [] and state_file() == state / "serve.json"
    remember(Deployment(address="127.0.0.1:8265", apps=["ecomine"], registries={"ecomine": "/r"}, pid=12))
    remember(Deployment(address="http://10.0.0.5:8265/", apps=["other"]))
    assert [(d.address, d.apps) for d in recorded()] == [("http://127.0.0.1:8265", ["ecomine"]),
                                                         ("http://10.0.0.5:8265", ["other"])]
    remember(Deployment(address="http://127.0.0.1:8265", apps=["ecomine"], pid=13))  # a redeploy replaces it
    assert [(d.address, d.pid) for d in recorded()] == [("http://10.0.0.5:8265", None), ("http://127.0.0.1:8265", 13)]
    forget("127.0.0.1:8265", ["ecomine"])
    assert [d.address for d in recorded()] == ["http://10.0.0.5:8265"]


def test_target_is_the_newest_record_and_a_foreign_address_needs_force(state: Path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_DASHBOARD_ADDRESS", raising=False)
    with pytest.raises(ServeConfigError, match=r"^serve down: no `ecomine serve up` is recorded here .*--force"):
        target(None, force=False, verb="serve down")
    assert target(None, force=True, verb="serve status") == ("http://127.0.0.1:8265", None)
    remember(Deployment(address="http://127.0.0.1:41234", apps=["ecomine"]))
    url, record = target(None, force=False, verb="serve down")
    assert url == "http://127.0.0.1:41234" and record is not None and record.apps == ["ecomine"]
    assert target("127.0.0.1:41234/", force=False, verb="serve down")[0] == "http://127.0.0.1:41234"
    with pytest.raises(ServeConfigError, match=r"--address http://127.0.0.1:8265 is not where `ecomine serve up` deployed "
                                               r"\(recorded: http://127.0.0.1:41234\); add --force"):
        target("http://127.0.0.1:8265", force=False, verb="serve down")
    assert target("http://127.0.0.1:8265", force=True, verb="serve down") == ("http://127.0.0.1:8265", None)
    assert normalise(" http://h:1/ ") == "http://h:1"


@pytest.mark.parametrize("argv", [["down"], ["status"], ["down", "--address", "http://127.0.0.1:8265"]])
def test_the_verbs_refuse_before_touching_any_cluster(state: Path, argv: list[str]) -> None:
    """A ServeConfigError (main prints it as one line, exit 2) before any connection attempt: a dead
    port would otherwise say 'no Ray dashboard answers'."""
    from ecomine.cli.main import app

    r = CliRunner().invoke(app, ["serve", *argv])
    assert isinstance(r.exception, ServeConfigError), (r.exception, r.output)
    msg = str(r.exception)
    assert "no Ray dashboard" not in msg and ("is recorded here" in msg or "is not where" in msg), msg


def test_an_unreadable_record_is_one_line(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "serve.json").write_text("{not json")
    with pytest.raises(ServeConfigError, match=r"serve.json: not a readable ecomine deployment record"):
        recorded()


def test_promote_with_serve_and_no_recorded_app_moves_nothing(state: Path, tmp_path: Path) -> None:
    """`registry promote --serve` checks where it would swap before the stage moves: refused, the stage unchanged."""
    from ecomine.cli.main import app
    from ecomine.registry import Registry

    files = tmp_path / "files"
    files.mkdir()
    (files / "weights.json").write_text("{}")
    reg = Registry(str(tmp_path / "registry"))
    a = reg.register("recommend", files, spec={}, data_fingerprint="x", metrics={}).version
    b = reg.register("recommend", files, spec={}, data_fingerprint="x", metrics={}).version
    reg.promote("recommend", a, "production")
    r = CliRunner().invoke(app, ["registry", "promote", b, "production", "--registry", str(tmp_path / "registry"),
                                 "--serve", "ecomine"])
    assert isinstance(r.exception, ServeConfigError) and "registry --serve: no `ecomine serve up` is recorded" in str(r.exception)
    assert reg.stage("recommend", "production").version == a
