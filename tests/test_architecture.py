"""Package boundaries, read from the import statements themselves (ast), not by searching the text.

The rules docs/architecture.md draws: the core never imports gradio; only the run-log package touches
SQLite; no import cycles between modules or between packages; the core never imports the UI or the CLI.
"""
import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import ROOT

PKG = ROOT / "prompt_lab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


PLANTED: dict[str, str] = {}  # module -> source text, for the tests that plant a violation


def source(path: Path) -> str:
    return PLANTED.get(module_name(path)) or path.read_text()


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module a file imports, anywhere in it (top level or inside a function), with its line."""
    tree = ast.parse(source(path), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from pkg import module` imports the module too
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def internal_graph() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for name, path in MODULES.items():
        for target, _ in imports_of(path):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    path = MODULES[module]
    if path.name == "__init__.py":
        return module if len(parts) <= 2 else ".".join(parts[:2])
    return ".".join(parts[:2]) if len(parts) > 2 else module


def is_core(module: str) -> bool:
    return not (module.startswith("prompt_lab.ui") or module.startswith("prompt_lab.cli") or module == "prompt_lab.__main__")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def offenders(rule) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {target}"
            for name, path in sorted(MODULES.items()) for target, line in imports_of(path) if rule(name, target)]


def test_the_core_never_imports_gradio():
    assert offenders(lambda name, target: is_core(name) and target.split(".")[0] == "gradio") == []


def test_only_the_run_log_touches_sqlite():
    assert offenders(lambda name, target: not name.startswith("prompt_lab.runlog")
                     and target.split(".")[0] in ("sqlite3", "sqlite_utils")) == []


def test_the_core_never_imports_the_ui_or_the_cli():
    assert offenders(lambda name, target: is_core(name) and (
        target.startswith("prompt_lab.ui") or target.startswith("prompt_lab.cli") or target == "prompt_lab.__main__")) == []


def test_no_module_import_cycles():
    assert find_cycle(internal_graph()) is None


def test_no_package_import_cycles():
    graph = defaultdict(set)
    for name, targets in internal_graph().items():
        for target in targets:
            if package_of(name) != package_of(target) and package_of(name) != "prompt_lab":
                graph[package_of(name)].add(package_of(target))
    assert find_cycle(graph) is None


def test_no_private_name_crosses_modules():
    """A helper named _x belongs to its module; sharing it means it is public (or in the wrong place)."""
    bad = []
    for name, path in sorted(MODULES.items()):
        for node in ast.walk(ast.parse(source(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prompt_lab"):
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                        for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert bad == []


def sql_calls(path: Path) -> list[int]:
    """Lines that run SQL on a connection or sqlite-utils database: .execute/.executemany/.executescript/.query."""
    return [node.lineno for node in ast.walk(ast.parse(source(path)))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "executemany", "executescript", "query")]


def test_only_the_run_log_runs_sql():
    """Not only the imports: no other module runs SQL on a database object handed to it."""
    runners = {f"{path.relative_to(ROOT)}:{line}" for name, path in MODULES.items()
               if not name.startswith("prompt_lab.runlog") for line in sql_calls(path)}
    assert runners == set()


def environment_reads(path: Path) -> list[int]:
    """Lines that read an environment variable: os.environ.get/[...]/in, os.getenv."""
    lines = []
    for node in ast.walk(ast.parse(source(path))):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                isinstance(node.value, ast.Name) and node.value.id == "os":
            lines.append(node.lineno)
    return lines


def test_environment_variables_are_read_only_in_settings():
    """Settings is the one place that says what the environment can change (and documents it)."""
    readers = {f"{path.relative_to(ROOT)}:{line}" for name, path in MODULES.items()
               if name != "prompt_lab.settings" for line in environment_reads(path)}
    assert readers == set()


# What each rule reports for the violation planted in prompt_lab/prompts/strategies.py (appended at its end).
AT = r"'prompt_lab/prompts/strategies\.py:\d+"
PLANTED_REPORTS = {
    "test_environment_variables_are_read_only_in_settings": AT + "'",
    "test_only_the_run_log_runs_sql": AT + "'",
    "test_the_core_never_imports_gradio": AT + " imports gradio'",
    "test_only_the_run_log_touches_sqlite": AT + " imports (sqlite_utils|sqlite3)'",
    "test_the_core_never_imports_the_ui_or_the_cli": AT + r" imports prompt_lab\.ui",
    "test_no_module_import_cycles": r"'prompt_lab\.compare'.*'prompt_lab\.prompts\.strategies'|"
                                    r"'prompt_lab\.prompts\.strategies'.*'prompt_lab\.compare'",
    "test_no_private_name_crosses_modules": AT + r" prompt_lab\.runlog\.store\._dumps'",
}


@pytest.mark.parametrize("rule, planted", [
    (test_environment_variables_are_read_only_in_settings, "import os\nX = os.environ.get('X')\n"),
    (test_only_the_run_log_runs_sql, "def f(db):\n    return db.execute('select 1')\n"),
    (test_the_core_never_imports_gradio, "import gradio as gr\n"),
    (test_the_core_never_imports_gradio, "def f():\n    from gradio import Blocks\n"),
    (test_only_the_run_log_touches_sqlite, "import sqlite_utils\n"),
    (test_only_the_run_log_touches_sqlite, "from sqlite3 import connect\n"),
    (test_the_core_never_imports_the_ui_or_the_cli, "from prompt_lab.ui import common\n"),
    (test_no_module_import_cycles, "from prompt_lab.compare import compare\n"),
    (test_no_private_name_crosses_modules, "from prompt_lab.runlog.store import _dumps\n"),
])
def test_each_rule_catches_a_planted_violation(rule, planted):
    """The rules can fail: plant one violation in a core module (prompt_lab/prompts/strategies.py is imported by
    compare, so importing compare back closes a cycle) and the rule must report it."""
    name = "prompt_lab.prompts.strategies"
    PLANTED[name] = MODULES[name].read_text() + "\n" + planted
    try:
        with pytest.raises(AssertionError, match=PLANTED_REPORTS[rule.__name__]):  # the rule names the planted line
            rule()
    finally:
        PLANTED.clear()


def test_modules_stay_small():
    """One concept per module: none over ~400 lines."""
    big = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert big == {}


def test_core_imports_without_gradio_or_torch():
    code = ("import sys, prompt_lab, prompt_lab.cli, prompt_lab.compare, prompt_lab.runlog.store, "
            "prompt_lab.answers.scoring, prompt_lab.models.registry; "
            "print('gradio' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    gradio_loaded, torch_loaded = out.stdout.split()
    assert gradio_loaded == "False"
    # torch is only imported when a model is loaded, so the CLI's `templates` and `runs` start fast
    assert torch_loaded == "False"
