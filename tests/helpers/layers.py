"""The layer contract of the package and an ``ast`` walk that checks it.

:data:`LAYERS` is the one table: a package imports only packages of a lower layer (never one
of its own layer, never a higher one), minus those its row excludes. A new subpackage needs one row here.
"""
from __future__ import annotations

import ast
from pathlib import Path

# package: (layer, lower packages it may still not import, what it is)
LAYERS: dict[str, tuple[int, tuple[str, ...], str]] = {
    "base": (0, (), "errors.py, _version.py, _lazy.py"),
    "io": (1, (), "atomic files, output folders and the lock, image decoding"),
    "core": (2, (), "SSIM, window, preprocessing, residuals, morphology, thresholds, verdicts, metrics"),
    "data": (3, (), "dataset layouts, splits, inputs, demo data"),
    "models": (4, (), "the model registry, Table 1 network, the models, AlexNet"),
    "runs": (5, (), "settings, checkpoint and the run loaded once, config, recipes"),
    "training": (6, (), "patches, the epoch loop"),
    "inference": (6, (), "scorer, torch and ONNX detectors, export, calibration"),
    "reporting": (7, (), "plots, report.html, tables, result-folder writers"),
    "serve": (8, ("training", "models", "data", "cluster"), "HTTP server: app, request batcher, upload decoding, page"),
    "cluster": (8, (), "Ray scoring (predict --ray), torchrun/DDP training (ssimae.cluster)"),
    "commands": (9, (), "one function per subcommand"),
    "cli": (10, (), "argument parsing"),
    "facade": (11, (), "ssimae/__init__.py (lazy Detector), ssimae/runtime.py (documented entry points), "
                       "ssimae/__main__.py (python -m ssimae)"),
}
BASE = {"errors", "_version", "_lazy"}
FACADE = {"", "runtime", "__main__"}


def package_of(module: str) -> str:
    """'ssimae.core.ssim' -> 'core'; 'ssimae.errors' -> 'base'; 'ssimae' / 'ssimae.runtime' -> 'facade'."""
    parts = module.split(".")[1:]
    head = parts[0] if parts else ""
    if head in BASE:
        return "base"
    if head in FACADE and len(parts) <= 1:
        return "facade"
    return head


def read_sources(root: Path) -> dict[str, str]:
    """{dotted module name: source} of every .py file of the package at ``root`` (src/ssimae)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f.read_text(encoding="utf-8")
    return out


def imports(module: str, source: str, modules: set[str]) -> list[tuple[str, int, bool]]:
    """(imported ssimae module, line, at module level) of every import in ``source``,
    including those inside functions; ``from P import name`` counts as importing P.name when
    that is a module."""
    is_package = any(m.startswith(module + ".") for m in modules)
    found = []
    tree = ast.parse(source)
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            if t == "ssimae" or t.startswith("ssimae."):
                found.append((t, node.lineno, id(node) in top))
    return found


def violations(sources: dict[str, str]) -> list[str]:
    """Every import that breaks :data:`LAYERS`, and every import circle among module-level
    imports (a module importing its own package's ``__init__``, as a model file does to
    register itself, is not counted as a circle): one line each."""
    modules = set(sources)
    problems, graph = [], {m: set() for m in modules}
    for m, src in sources.items():
        pm = package_of(m)
        if pm not in LAYERS:
            problems.append(f"{m}: package {pm!r} is not in the layer table (tests/helpers/layers.py)")
            continue
        rank, excluded, _ = LAYERS[pm]
        for target, line, top in imports(m, src, modules):
            pt = package_of(target)
            if top and target in modules and not (m.startswith(target + ".") and target != "ssimae"):
                graph[m].add(target)
            if pt == pm or pt not in LAYERS:
                continue
            if LAYERS[pt][0] >= rank or pt in excluded:
                problems.append(f"{m}:{line} imports {target} ({pt}, layer {LAYERS[pt][0]}) from {pm} "
                                f"(layer {rank})")
    problems += [f"import circle: {' -> '.join(c)}" for c in circles(graph)]
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out
