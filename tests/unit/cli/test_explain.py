"""`ecomine explain`: a registered version's answer with explanations offline; bad input one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecomine.cli.explain import ExplainError, explain_offline

N_ITEMS = 30
ITEMS = [f"i{n}" for n in range(N_ITEMS)]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ecomine.models.recommend import ItemVocab, RecommenderConfig, SequentialRecommender, save_recommender
    from ecomine.models.recommend_baselines import BaselineRecommender, MostPopular
    from ecomine.registry import Registry

    root = tmp_path_factory.mktemp("explain-cli")
    reg = Registry(root / "registry")
    vocab = ItemVocab(items=ITEMS, texts=[f"title {i}" for i in ITEMS])
    torch.manual_seed(0)
    model = SequentialRecommender(RecommenderConfig(n_items=N_ITEMS, hidden=16, layers=1, heads=2, max_len=8))
    with torch.no_grad():
        model.item_embeddings.weight.mul_(50)  # scores that depend on the history
    seqs = [np.array([1, 2, 3]), np.array([2, 3, 4])]
    popular = BaselineRecommender("most_popular", MostPopular(N_ITEMS + 1, pad_id=0).fit(seqs))
    for version, obj in (("rec-t", model.eval()), ("rec-pop", popular)):
        folder = root / version
        save_recommender(folder, obj, vocab, popular=[1, 2, 3])
        reg.register("recommend", folder, spec={"task": "recommend"}, data_fingerprint="x", metrics={}, version=version)
    reg.promote("recommend", "rec-t", "production")
    return root / "registry"


def _cli(registry: Path, tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:9"}  # a Ray start would fail
    return subprocess.run([sys.executable, "-m", "ecomine.cli.main", "explain", *args, "--registry", str(registry)],
                          capture_output=True, text=True, env=env, timeout=120, input=stdin,
                          cwd=Path(__file__).resolve().parents[3])


def test_the_cli_writes_the_served_answer_with_its_explanations(registry: Path, tmp_path: Path) -> None:
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"history": ["i3", "i7", "i3", "i12", "i5"], "k": 4}))
    done = _cli(registry, tmp_path, "recommend", str(request), "--out", str(tmp_path / "out.json"))
    assert done.returncode == 0, done.stderr
    answer = json.loads((tmp_path / "out.json").read_text())
    assert answer["versions"] == ["rec-t"] and len(answer["items"]) == 4
    assert answer["explanation"].startswith("occlusion")
    assert any(it["because"] for it in answer["items"])
    assert all(b["item_id"] in ("i3", "i7", "i12", "i5") for it in answer["items"] for b in it["because"])
    # the same as the library call, and as the served path computes it (test_explain_recommend checks that)
    again = explain_offline(str(registry), "recommend", "production", json.loads(request.read_text()))
    assert [it["item_id"] for it in again["items"]] == [it["item_id"] for it in answer["items"]]


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["recommend", "-", "--version", "rec-pop"], '{"history": ["i1"]}',
         "explain: recommend/rec-pop cannot explain: the popularity baseline ranks every user alike"),
        (["recommend", "-"], '{"history": ["i1"], "k": "ten"}', "stdin: k: Input should be a valid integer"),
        (["recommend", "-"], "{not json", "stdin: not JSON: Expecting property name"),
        (["recommend", "-", "--version", "rec-zzz"], '{"history": ["i1"]}', "cannot resolve recommend version 'rec-zzz'"),
    ],
    ids=["cannot-explain", "bad-field", "not-json", "no-version"],
)
def test_bad_input_is_one_line(registry: Path, tmp_path: Path, args: list[str], stdin: str, needle: str) -> None:
    done = _cli(registry, tmp_path, *args, stdin=stdin)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert needle in " ".join(done.stderr.split()), done.stderr


def test_library_errors_name_the_field(registry: Path) -> None:
    with pytest.raises(ExplainError, match="history: offline explain needs the history itself"):
        explain_offline(str(registry), "recommend", "production", {"user_id": "u1"})
    with pytest.raises(ExplainError, match="task must be one of"):
        explain_offline(str(registry), "returns", "production", {})
    with pytest.raises(ExplainError, match="must be an object, got list"):
        explain_offline(str(registry), "recommend", "production", [1])
    with pytest.raises(ExplainError, match="categories: .*catalogue"):
        explain_offline(str(registry), "recommend", "production", {"history": ["i1"], "categories": ["toys"]})
