"""The layout shows the architecture: core's layers only point down, nothing in the repository imports in a circle,
core never imports Streamlit, and the commands stay thin (argument parsing that calls library code)."""
from __future__ import annotations

import ast
from pathlib import Path

from core.config import REPO_ROOT

CORE = REPO_ROOT / "core"
COMMANDS = ("train", "evaluate", "report", "samples", "guard", "monitor", "roles")

# core's layers, lowest first: a module may import from its own layer and the layers below it, never above (lazy
# imports inside functions count). Commands (`core.<verb>`, `core.<package>.__main__`, `core.cli`) sit on top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "sqlfilters", "sqlwal", "registry", "users", "confirmations"),  # settings, stores; specs; roles; readers' calls
    ("io",),  # bytes -> pixels, or InputError
    ("models",),  # networks, the store, BatchNorm folding, which model a task ships
    ("inference",),  # preprocessing, the forward pass, calibration map, Grad-CAM, guards, routing, scoring
    ("export",),  # ONNX graphs and the onnxruntime engine
    ("data",),  # manifests, leak-free splits, prepared arrays, stain normalisation, demo samples
    ("evaluation",),  # metrics, intervals, calibration fits, operating points, charts, reviews
    ("fields",),  # whole smear fields: find, cut and screen cells
    ("site",),  # site profiles: local validation and operating points
    ("training",),  # how a model is *made*: fit, CV, fold ensembles, second-site check, guard statistics
    ("cards",),  # what a model card records: test looks, patient-level intervals, external sets, tables
    ("audit",),  # who scored what, hashes only
    ("handoff", "batch"),  # PDF/DICOM hand-off to a PACS; batch scoring (local or Ray)
    ("monitoring",),  # what was scored and whether the scores drift from validation (audit log, batch outputs)
)
PACKAGES = tuple(p for layer in LAYERS for p in layer if (CORE / p).is_dir())


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every core module this file imports, at module level or inside functions (both make a circle)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("core"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs or ({node.module} & known)
            if len(subs) < len(node.names) and node.module in known:
                out.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; core uses absolute imports so a move cannot break them")
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(p, set(mods)) - {m} for m, p in mods.items()}


def _layer(module: str) -> int:
    """Index in LAYERS; commands above every layer."""
    parts = module.split(".")
    if len(parts) == 1 or parts[-1] == "__main__" or parts[1] in COMMANDS + ("cli", "predict"):
        return len(LAYERS)
    for i, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return i
    raise AssertionError(f"{module}: core/{parts[1]} is in no layer; add it to LAYERS in tests/test_layout.py")


def test_layers_only_point_down():
    upward = [f"{m} -> {n}" for m, deps in _graph().items() for n in deps if _layer(n) > _layer(m)]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(sorted(upward))


def test_every_core_module_has_a_layer():
    for m in _modules():
        _layer(m)


def _circles(graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(n):] + [m, n]))
            if n not in state:
                visit(n, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_no_import_circles():
    _circles(_graph())


def _repo_graph() -> dict[str, set[str]]:
    """Module graph of ui/, app_pages/ and benchmarks/ (core is checked above)."""
    mods = {_module_name(p): p for d in ("ui", "app_pages", "benchmarks") for p in (REPO_ROOT / d).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for m, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(m.split(".")[: -node.level] + [node.module or ""]) if node.level else node.module
                subs = {f"{base}.{a.name}".replace("..", ".") for a in node.names} & set(mods)
                deps |= subs or ({base.rstrip(".")} & set(mods))
        graph[m] = deps - {m}
    return graph


def test_no_import_circles_outside_core():
    graph = _repo_graph()
    assert "ui.common" in graph["app_pages.predict"]
    assert "benchmarks.common" in graph["benchmarks.run"]  # relative imports are followed too
    _circles(graph)


def test_the_graph_sees_real_imports():
    graph = _graph()
    assert "core.io.base" in graph["core.io.images"] and "core.io.base" in graph["core.io.dicom"]
    assert "core.io.dicom" in graph["core.io.images"]  # lazy import inside a function still counts
    assert "core.registry" in graph["core.models.store"]
    assert _layer("core.registry") < _layer("core.models.store") < _layer("core.training.fit")
    assert _layer("core.fields.__main__") == _layer("core.train") == len(LAYERS)


def test_core_never_imports_streamlit():
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "streamlit" for n in names), f"{path} imports Streamlit"


def test_commands_only_parse_arguments():
    for cmd in COMMANDS:
        tree = ast.parse((CORE / f"{cmd}.py").read_text())
        defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert defs == ["main"], f"core/{cmd}.py defines {defs}: logic belongs in a package"


def test_every_package_says_its_job():
    for pkg in PACKAGES:
        doc = ast.get_docstring(ast.parse((CORE / pkg / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"core/{pkg}/__init__.py needs a docstring naming its job and public API"
