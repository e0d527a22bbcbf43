"""ecomine's import graph: no circle between modules, no arrow against the data flow of DESIGN.md.

Every `import` counts - module level and function-local alike (a local import that
closes a circle only hides it) - except those under `if TYPE_CHECKING:`, which never
run. The checker's own tests run it on tiny fake graphs, so it can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ecomine"

# The data-flow order of DESIGN.md, lowest first: a module may import its own layer and
# any layer before it. specs and storage are shared by all (with cluster, the one place
# that starts or joins Ray and unwraps Ray's exceptions); api is the HTTP contract that
# predict, serve and the client share; the operators' verbs sit on top, each calling down
# and called by nothing below, and the CLI above them all.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shared", ("ecomine", "ecomine.specs", "ecomine.storage", "ecomine.cluster")),
    ("api", ("ecomine.api",)),
    ("live", ("ecomine.live",)),
    ("data", ("ecomine.data", "ecomine.datasets")),
    ("models", ("ecomine.models",)),
    ("train", ("ecomine.train",)),
    ("tuning", ("ecomine.tuning",)),
    ("registry", ("ecomine.registry",)),
    ("predict", ("ecomine.predict",)),
    ("ensemble", ("ecomine.ensemble",)),
    ("serve", ("ecomine.serve",)),
    ("client", ("ecomine.client",)),
    ("operators", ("ecomine.retrain", "ecomine.score", "ecomine.demo")),
    ("cli", ("ecomine.cli",)),
)

# Upstream arrows that are seams, not bugs: (importer, imported) -> why.
SEAMS: dict[tuple[str, str], str] = {
    ("ecomine.train.runner", "ecomine.registry"):
        "a finished run registers its version: the one seam from training into the registry (DESIGN: train -> registry)",
}


# --------------------------------------------------------------------------- the checker


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _parse(path: Path) -> ast.Module:
    """`ast.parse`, once more if CPython 3.11's AST constructor trips on its process-wide recursion counter
    (cpython gh-106905: another thread parsing at the same moment - 3.11 parses a source line for the carets of
    every formatted traceback - fails it with "AST constructor recursion depth mismatch"; seen once in the suite)."""
    for attempt in range(3):
        try:
            return ast.parse(path.read_text(), str(path))
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package modules it imports (at module level or inside a function)."""
    files = {module_name(f, root): f for f in root.rglob("*.py")}
    known, top = set(files), root.name
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = _parse(path)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # `from pkg import mod` imports the module pkg.mod; `from mod import name`, the module mod
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for name in names:
                if name != top and not name.startswith(top + "."):
                    continue
                while name not in known and "." in name:
                    name = name.rpartition(".")[0]
                if name in known and name != mod:
                    targets.add(name)
        graph[mod] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def layer_of(module: str, layers=LAYERS) -> int:
    """Index of the layer whose longest prefix names `module`; KeyError for a module no layer claims."""
    best, rank = "", None
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, rank = p, i
    if rank is None:
        raise KeyError(f"{module}: in no layer of LAYERS (add it where it sits in the data flow)")
    return rank


def upstream_arrows(graph: dict[str, set[str]], layers=LAYERS, seams=SEAMS) -> list[str]:
    """Imports from a lower layer into a higher one that are not listed seams."""
    bad = []
    for mod, targets in sorted(graph.items()):
        for t in sorted(targets):
            seam = any(mod.startswith(a) and (t == b or t.startswith(b + ".")) for a, b in seams)
            if layer_of(t, layers) > layer_of(mod, layers) and not seam:
                bad.append(f"{mod} ({layers[layer_of(mod, layers)][0]}) imports {t} "
                           f"({layers[layer_of(t, layers)][0]})")
    return bad


# --------------------------------------------------------------------------- ecomine itself


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE)


def test_the_walk_sees_the_package_and_local_imports(graph) -> None:
    assert len(graph) > 100
    assert "ecomine.registry" in graph["ecomine.train.runner"]  # a function-local import
    assert "ecomine.models.demand" in graph["ecomine.train.demand_eval"]  # a module-level one


def test_ray_is_started_in_one_place() -> None:
    """Every ray.init goes through cluster.session.ensure_ray: one address rule, one set of log settings."""
    calls = sorted(str(f.relative_to(PACKAGE)) for f in PACKAGE.rglob("*.py") if "ray.init(" in f.read_text())
    assert calls == ["cluster/session.py"], calls


def test_no_import_circle(graph) -> None:
    assert find_cycles(graph) == []


def test_every_module_sits_in_a_layer(graph) -> None:
    for mod in graph:
        layer_of(mod)


def test_no_arrow_against_the_data_flow(graph) -> None:
    assert upstream_arrows(graph) == []


def test_every_seam_is_still_used(graph) -> None:
    for importer, imported in SEAMS:
        assert any(imported == t or t.startswith(imported + ".") for t in graph[importer]), (importer, imported)


# --------------------------------------------------------------------------- the checker can fail


FAKE_LAYERS = (("low", ("pkg.a",)), ("high", ("pkg.b", "pkg.c")))


def test_checker_finds_a_circle_and_an_upstream_arrow() -> None:
    fake = {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.b"}}
    assert find_cycles(fake) == [["pkg.b", "pkg.c"]]
    assert upstream_arrows(fake, FAKE_LAYERS, seams={}) == ["pkg.a (low) imports pkg.b (high)"]
    assert upstream_arrows(fake, FAKE_LAYERS, seams={("pkg.a", "pkg.b"): "why"}) == []
    assert find_cycles({"pkg.a": set(), "pkg.b": {"pkg.a"}}) == []
    with pytest.raises(KeyError, match="pkg.z"):
        layer_of("pkg.z", FAKE_LAYERS)


def test_walk_reads_function_local_relative_and_from_imports(tmp_path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n    return b\n")
    (pkg / "b.py").write_text("from .c import thing\n")
    (pkg / "c.py").write_text("import pkg.a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n"
                              "thing = 1\n")
    g = import_graph(pkg)
    assert g == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_cycles(g) == [["pkg.a", "pkg.b", "pkg.c"]]
