"""The package's layering, as properties of its import graph (every import, module level or inside functions).

- No import cycles among the project's packages (orchestrator, callbacks, entry_scripts).
- No `_private` name is imported from another module.
- Every import goes to the same layer or a lower one (LAYERS, lowest first; the README's "Layout" shows them).
- What runs inside a Ray job (the job side: `orchestrator.jobside`, `orchestrator.training`, `orchestrator.contract`,
  `callbacks`, `entry_scripts`) never imports the submitting side (submission, runs, the CLI, serving, schedules,
  the registry, the engine's management), neither in the source nor when it is imported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "callbacks", "entry_scripts")
JOB_SIDE = (
    "orchestrator.jobside",
    "orchestrator.training",
    "orchestrator.contract",
    "callbacks",
    "callbacks.health",
    "callbacks.metrics",
    "callbacks.mlflow_tracking",
    "entry_scripts.train",
    "entry_scripts.autoscale_ppo",
    "entry_scripts.pong_impala",
)
SUBMITTING_SIDE = (
    "orchestrator.submission",
    "orchestrator.submit",
    "orchestrator.run",
    "orchestrator.estimator",
    "orchestrator.serving",
    "orchestrator.predictor",
    "orchestrator.serving_options",
    "orchestrator.serving_ray",
    "orchestrator.export",
    "orchestrator.schedule",
    "orchestrator.scheduler",
    "orchestrator.registry",
    "orchestrator.registry_db",
    "orchestrator.registry_schema",
    "orchestrator.records",
    "orchestrator.backends",
    "orchestrator.local_ray",
    "orchestrator.cluster",
    "orchestrator.render",
    "orchestrator.compat",
    "orchestrator.cli",
)


# Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS = (
    (
        "base",
        (
            "orchestrator.errors",
            "orchestrator.settings",
            "orchestrator.events",
            "orchestrator.interrupts",
            "orchestrator.outputs",
            "orchestrator.polling",
            "orchestrator.metrics",
            "orchestrator.tables",
            "orchestrator.logview",
            "orchestrator.catalog",
            "orchestrator.cron",
            "orchestrator.placement",
            "orchestrator.contract",
            "orchestrator.algorithms",
            "orchestrator.envs",
            "orchestrator.autoscale",
            "orchestrator.edge",
            "orchestrator.policy",
            "orchestrator.predict_api",
            "orchestrator.serving_options",
            "orchestrator.records",
            "orchestrator.registry_schema",
            "orchestrator.registry_db",
            "orchestrator.registry",
            "orchestrator.tracking",
        ),
    ),
    ("spec", ("orchestrator.spec",)),
    ("plan", ("orchestrator.planner", "orchestrator.nodes", "orchestrator.package")),
    ("engine", ("orchestrator.local_ray", "orchestrator.backends", "orchestrator.cluster", "orchestrator.serving_ray")),
    (
        "job",
        (
            "orchestrator.training",
            "orchestrator.jobside",
            "orchestrator.sweep",
            "orchestrator.plots",
            "callbacks",
            "entry_scripts",
        ),
    ),
    (
        "api",
        (
            "orchestrator.submission",
            "orchestrator.submit",
            "orchestrator.run",
            "orchestrator.estimator",
            "orchestrator.serving",
            "orchestrator.predictor",
            "orchestrator.serving_endpoint",
            "orchestrator.export",
            "orchestrator.schedule",
            "orchestrator.scheduler",
            "orchestrator.progress",
            "orchestrator.render",
            "orchestrator.compat",
            "orchestrator.edge.server",
        ),
    ),
    (
        "cli",
        (
            "orchestrator.cli",  # the app and main()
            "orchestrator.cli.common",
            "orchestrator.cli.runs",
            "orchestrator.cli.serving",
            "orchestrator.cli.autoscale",
            "orchestrator.cli.schedule",
            "orchestrator.cli.render",
            "orchestrator.cli.sweep",
            "orchestrator.cli.cluster",
            "orchestrator.cli.export",
        ),
    ),
)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            hit = module == p or module.startswith(p + ".")
            if hit and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """module -> the project's modules it imports; and every `_private` name imported from another module."""
    edges: dict[str, set[str]] = defaultdict(set)
    private = []
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base
                    if target in mods and target != m:
                        edges[m].add(target)
                        if target == base and alias.name.startswith("_") and not alias.name.startswith("__"):
                            private.append(f"{m} imports {base}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in mods and alias.name != m:
                        edges[m].add(alias.name)
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def reach(edges: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` imports, directly or not -> the module that imports it (to show the path)."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        m = todo.pop()
        for t in edges.get(m, ()):
            if t not in seen and t != start:
                seen[t] = m
                todo.append(t)
    return seen


def is_submitting(module: str) -> bool:
    return any(module == s or module.startswith(s + ".") for s in SUBMITTING_SIDE)


def test_the_graph_reader_sees_a_cycle_and_a_private_import(tmp_path, monkeypatch):
    """The checks below can fail: on a package made to have both, they report both."""
    pkg = tmp_path / "orchestrator"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import _hidden\n")
    (pkg / "b.py").write_text("from orchestrator import a\n_hidden = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ("orchestrator",))
    edges, private = imports(modules())
    assert cycles(edges) == [["orchestrator.a", "orchestrator.b"]]
    assert private == ["orchestrator.a imports orchestrator.b._hidden"]


def test_no_import_cycles():
    edges, _ = imports(modules())
    assert cycles(edges) == []


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_ones():
    mods = modules()
    assert [m for m in sorted(mods) if m != "orchestrator" and layer_of(m) is None] == []
    edges, _ = imports(mods)
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m in sorted(edges)
        if m != "orchestrator"  # the package root offers the public names of every layer (loaded on first use)
        for t in sorted(edges[m])
        if layer_of(t) > layer_of(m)
    ]
    assert upward == []


def test_no_private_name_is_imported_from_another_module():
    _, private = imports(modules())
    assert private == []


def test_the_job_side_never_imports_the_submitting_side():
    edges, _ = imports(modules())
    found = []
    for start in JOB_SIDE:
        via = reach(edges, start)
        for target in sorted(t for t in via if is_submitting(t)):
            path, m = [target], target
            while m in via:
                m = via[m]
                path.append(m)
            found.append(" <- ".join(path))
    assert found == []


def test_importing_the_job_side_loads_nothing_of_the_submitting_side():
    """At run time too: `orchestrator/__init__` loads its names on first use, so a job's imports stay small."""
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in JOB_SIDE)
        + "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in ('orchestrator', 'callbacks')))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    loaded = res.stdout.split()
    assert "orchestrator.jobside" in loaded
    assert [m for m in loaded if is_submitting(m)] == []
