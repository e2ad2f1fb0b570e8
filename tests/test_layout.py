"""The layout shows the architecture: core's packages import each other without circles, core never imports
Streamlit, and the commands stay thin (argument parsing that calls library code)."""
from __future__ import annotations

import ast
from pathlib import Path

from core.config import REPO_ROOT

CORE = REPO_ROOT / "core"
COMMANDS = ("train", "evaluate", "report", "samples", "guard")
PACKAGES = ("io", "models", "inference", "data", "evaluation", "fields", "site", "handoff", "batch", "export")


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


def test_no_import_circles():
    graph = _graph()
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


def test_the_graph_sees_real_imports():
    graph = _graph()
    assert "core.io.base" in graph["core.io.images"] and "core.io.base" in graph["core.io.dicom"]
    assert "core.io.dicom" in graph["core.io.images"]  # lazy import inside a function still counts
    assert "core.models.registry" in graph["core.models.store"]


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
