"""The package's import graph: folders are layers, imports go one way, no cycles.

Read from the source with ast (nothing is imported), so a new module is checked the moment it
exists. docs/architecture.md describes the same order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "snpbag"

#: Lowest first. A module may import its own package (folder or top-level module) or any
#: strictly lower layer; packages sharing a layer do not import each other, except the base
#: modules of layer 0 (config raises errors; the cycle test keeps them acyclic).
LAYERS: list[set[str]] = [
    {"snpbag", "errors", "fileio", "parallel", "progress", "provenance", "config"},
    {"io"},
    {"store"},
    {"retrieval", "simulate", "eval"},
    {"data", "kinship"},
    {"model"},
    {"modeldir"},
    {"train", "inference"},
    {"api"},
    {"demo"},
    {"cli"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}

#: Third-party packages slow enough to import that a module may defer them (and the snpbag
#: modules that import them at their top) to the function that needs them.
HEAVY = {"torch", "lightning", "zarr", "numba", "msprime", "tskit", "stdpopsim", "cyvcf2", "hydra",
         "omegaconf", "safetensors", "wandb", "scipy", "sklearn", "matplotlib"}


def _module_name(path: Path) -> str:
    parts = ["snpbag", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The layer unit of a module: its folder under snpbag/, or the top-level module's name."""
    parts = module.split(".")
    return "snpbag" if len(parts) == 1 else parts[1]


def _imports(path: Path, module: str) -> list[tuple[str, bool, int]]:
    """(imported module, at module level?, line) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    # an `if TYPE_CHECKING:` block at module level counts as module level
    for n in tree.body:
        if isinstance(n, ast.If):
            top |= {id(m) for m in n.body}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out += [(a.name, id(n) in top, n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                anchor = package.split(".")[: len(package.split(".")) - (n.level - 1)]
                base = ".".join(anchor + ([n.module] if n.module else []))
            names = [f"{base}.{a.name}" for a in n.names]
            # `from snpbag.x import y`: y is a module when snpbag/x/y.py exists
            for name in names:
                target = name if _is_module(name) else base
                out.append((target, id(n) in top, n.lineno))
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return name.startswith("snpbag.") and ((ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel).is_dir())


def _graph():
    files = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
    return files, {m: _imports(p, m) for m, p in files.items()}


FILES, IMPORTS = _graph()


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in FILES}
    assert units - set(RANK) == set(), "add the new package to LAYERS here and to docs/architecture.md"


def test_imports_go_down_the_layers():
    bad = []
    for module, imports in IMPORTS.items():
        src = _unit(module)
        for target, _, line in imports:
            if target != "snpbag" and not target.startswith("snpbag."):
                continue
            dst = _unit(target)
            if dst != src and RANK[dst] >= RANK[src] and RANK[src] > 0:
                bad.append(f"{FILES[module].relative_to(ROOT.parent)}:{line} {module} imports {target} "
                           f"(layer {RANK[src]} -> {RANK[dst]})")
    assert bad == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
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

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    edges = {m: {t for t, _, _ in imps if t in FILES and t != m} for m, imps in IMPORTS.items()}
    # a package's __init__ importing its own modules is not a cycle with them
    for m in edges:
        edges[m] = {t for t in edges[m] if not (m in FILES and FILES[m].name == "__init__.py" and t.startswith(m + "."))
                    and not (FILES[t].name == "__init__.py" and m.startswith(t + "."))}
    assert _cycles(edges) == []


def _heavy_modules() -> set[str]:
    """snpbag modules that import a HEAVY package at their top, directly or through snpbag modules."""
    heavy = {m for m, imps in IMPORTS.items() if any(t.split(".")[0] in HEAVY for t, top, _ in imps if top)}
    changed = True
    while changed:
        changed = False
        for m, imps in IMPORTS.items():
            if m not in heavy and any(t in heavy for t, top, _ in imps if top):
                heavy.add(m)
                changed = True
    return heavy


def test_internal_imports_are_at_module_level_unless_heavy():
    """Deferring an import is for start-up time only: a function may import a snpbag module late
    only when that module pulls in a heavy third-party package (torch, zarr, numba, msprime, ...)."""
    heavy = _heavy_modules()
    bad = [f"{FILES[m].relative_to(ROOT.parent)}:{line} imports {t} inside a function"
           for m, imps in IMPORTS.items() for t, top, line in imps
           if not top and t in FILES and t not in heavy]
    assert bad == []


@pytest.mark.parametrize("rule", ["down", "cycle"])
def test_the_checks_can_fail(rule):
    """The checkers themselves flag a known-bad graph."""
    if rule == "cycle":
        assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    else:
        assert RANK[_unit("snpbag.io.vcf")] < RANK[_unit("snpbag.store.genotypes")]
        assert _unit("snpbag.cli") == "cli" and _unit("snpbag") == "snpbag"
