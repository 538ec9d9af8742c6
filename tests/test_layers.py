"""The import layers of ``src/`` (docs/architecture.md, "Layers"): every import, at module level or
inside a function, goes from a layer to a strictly lower one, or stays inside its own component;
modules in one layer do not import each other; and no two modules import each other, directly or
through others (no cycle at module level, inside a package included).

The check is an AST walk over the source files, so it sees the lazy imports inside functions
that a run-time check would miss. The layer list below is the one written in
docs/architecture.md (a test checks that the two agree).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: bottom to top; each entry is one layer, a tuple of its components (peers that do not import
#: each other). A component is a top-level module or package of ``npuflow`` (or ``ktc``).
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("_io", "_mem", "_version"),
    ("_outputs",),
    ("inputs", "preprocess"),
    ("ir",),
    ("passes",),
    ("platforms",),
    ("reference",),
    ("evaluate",),
    ("sim",),
    ("quant", "calibration"),
    ("analysis",),
    ("bie",),
    ("report",),
    ("model",),
    ("api", "debug", "helpers"),
    ("flow",),
    ("config",),
    ("cli",),
    ("ktc", "npuflow", "__main__"),
]


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str, modules: set[str]) -> list[tuple[int, str]]:
    """(line, imported npuflow/ktc module) for every import statement in ``path``."""
    is_pkg = path.name == "__init__.py"
    package = module.split(".") if is_pkg else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import sub`` imports the submodule pkg.sub, not (only) pkg's __init__
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        out += [(node.lineno, t) for t in targets if t.split(".")[0] in ("npuflow", "ktc")]
    return out


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module a dotted import name refers to (``npuflow.x.Name`` -> ``npuflow.x``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _component(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "ktc":
        return "ktc"
    return parts[1] if len(parts) > 1 else "npuflow"


def scan(src: Path = SRC) -> tuple[dict[str, list[tuple[int, str]]], dict[str, Path]]:
    """module -> [(line, imported module)], and module -> file."""
    files = {_module_name(p, src): p for p in sorted(src.rglob("*.py"))}
    modules = set(files)
    graph = {}
    for mod, path in files.items():
        graph[mod] = [(line, r) for line, t in _imports(path, mod, modules) if (r := _resolve(t, modules)) and r != mod]
    return graph, files


def layer_violations(graph: dict[str, list[tuple[int, str]]], files: dict[str, Path],
                     layers: list[tuple[str, ...]] = LAYERS) -> list[str]:
    rank = {c: i for i, layer in enumerate(layers) for c in layer}
    bad = []
    for mod, edges in graph.items():
        a = _component(mod)
        if a not in rank:
            bad.append(f"{files[mod]}: component {a!r} is in no layer (add it to LAYERS and docs/architecture.md)")
            continue
        for line, target in edges:
            b = _component(target)
            if a == b:
                continue
            if b not in rank:
                bad.append(f"{files[mod]}:{line}: imports {target}, whose component {b!r} is in no layer")
            elif rank[b] > rank[a]:
                bad.append(f"{files[mod]}:{line}: {mod} (layer {rank[a]}: {a}) imports {target} (higher layer "
                           f"{rank[b]}: {b})")
            elif rank[b] == rank[a]:
                bad.append(f"{files[mod]}:{line}: {mod} imports its peer {target} (both in layer {rank[a]}: "
                           f"{', '.join(layers[rank[a]])}); peers do not import each other")
    return bad


def cycles(graph: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    succ = {m: sorted({t for _, t in e}) for m, e in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    counter = 0
    for root in sorted(succ):
        if root in index:
            continue
        work = [(root, iter(succ.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(succ.get(w, ()))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_imports_go_down_the_layers_only() -> None:
    graph, files = scan()
    assert len(files) > 50, "the scan found too few modules: is SRC right?"
    assert sum(len(e) for e in graph.values()) > 100, "the scan found too few imports"
    bad = layer_violations(graph, files)
    assert not bad, "imports against the layer order (docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph, _ = scan()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_every_component_is_placed() -> None:
    graph, _ = scan()
    placed = {c for layer in LAYERS for c in layer}
    comps = {_component(m) for m in graph}
    assert comps <= placed, f"components in no layer: {sorted(comps - placed)}"
    assert placed - comps == set(), f"layers name components that do not exist: {sorted(placed - comps)}"


def test_architecture_doc_lists_the_same_layers() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- layers -->\n```\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no '<!-- layers -->' block"
    rows = [ln.split("|")[0].strip() for ln in block.group(1).strip().splitlines()]
    doc_layers = [tuple(c.strip() for c in re.sub(r"^\d+\.\s*", "", r).split(",")) for r in rows]
    assert doc_layers == LAYERS[::-1], "docs/architecture.md's layer list (top to bottom) differs from LAYERS"


# --- the checker itself: planted violations must be found ---------------------------------------

def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "src"
    for rel, text in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return src


def test_planted_upward_import_fails(tmp_path: Path) -> None:
    """A copy of the real tree with one lazy upward import planted in a low layer is refused."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    target = src / "npuflow" / "passes" / "remove_identity.py"
    target.write_text(target.read_text() + "\n\ndef _planted():\n    from npuflow.config import ModelConfig\n"
                      "    return ModelConfig\n")
    graph, files = scan(src)
    bad = layer_violations(graph, files)
    assert len(bad) == 1 and "remove_identity.py" in bad[0] and "npuflow.config" in bad[0], bad


def test_planted_cycle_and_peer_import_fail(tmp_path: Path) -> None:
    src = _plant(tmp_path, {
        "npuflow/__init__.py": "",
        "npuflow/errors.py": "",
        "npuflow/sim/__init__.py": "from npuflow.sim import a\n",
        "npuflow/sim/a.py": "def f():\n    from npuflow.sim.b import g\n",
        "npuflow/sim/b.py": "from . import a\n",
        "npuflow/quant/__init__.py": "import npuflow.calibration.x\n",
        "npuflow/calibration/__init__.py": "",
        "npuflow/calibration/x.py": "from npuflow.errors import Y\n",
    })
    graph, files = scan(src)
    assert cycles(graph) == [["npuflow.sim.a", "npuflow.sim.b"]]
    bad = layer_violations(graph, files, [("errors",), ("sim",), ("quant", "calibration"), ("npuflow",)])
    assert len(bad) == 1 and "peer" in bad[0], bad


@pytest.mark.parametrize("stmt, expected", [
    ("from npuflow.report import charts", "npuflow.report.charts"),
    ("from npuflow.report import build_x", "npuflow.report"),
    ("import npuflow.report.charts as c", "npuflow.report.charts"),
    ("from .charts import z", "npuflow.report.charts"),
    ("from .. import errors", "npuflow.errors"),
])
def test_import_resolution(tmp_path: Path, stmt: str, expected: str) -> None:
    src = _plant(tmp_path, {
        "npuflow/__init__.py": "", "npuflow/errors.py": "", "npuflow/report/__init__.py": "",
        "npuflow/report/charts.py": "", "npuflow/report/document.py": f"def f():\n    {stmt}\n",
    })
    graph, _ = scan(src)
    assert [t for _, t in graph["npuflow.report.document"]] == [expected]
