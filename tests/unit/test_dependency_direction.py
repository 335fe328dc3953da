"""Dependencies point one way: cli -> local -> modeling -> the runtime package, never back.

The Lambda artifact ships the runtime package without modelwatch.cli, modelwatch.local
and modelwatch.modeling (functions/function.mk), so a runtime module that imported one
of them would fail only in Lambda; and the local cloud importing the command line
would tie the two together for no reason.

Each import check runs in a fresh interpreter, so modules this test session already
loaded cannot hide or fake an edge. Imports deferred into a function body never run
at import time, so a second check reads every module's import statements (with ast).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import modelwatch

pytestmark = pytest.mark.unit

PACKAGE_DIR = Path(modelwatch.__file__).parent
TOOLING = ("modelwatch.cli", "modelwatch.local", "modelwatch.modeling")

# What each layer may not reach; the runtime is everything outside TOOLING.
FORBIDDEN = {
    "modelwatch.local": ("modelwatch.cli",),
    "modelwatch.modeling": ("modelwatch.cli", "modelwatch.local"),
    "runtime": TOOLING,
}

IMPORT_AND_LIST = textwrap.dedent(
    """
    import importlib, json, sys
    for name in sys.argv[1:]:
        importlib.import_module(name)
    print(json.dumps(sorted(name for name in sys.modules if name.startswith("modelwatch"))))
    """
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def modules_of(layer: str) -> dict[str, Path]:
    """Module name -> file, found on disk so that listing them imports nothing."""
    modules = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}
    if layer == "runtime":
        return {name: path for name, path in modules.items() if not any(is_within(name, t) for t in TOOLING)}
    return {name: path for name, path in modules.items() if is_within(name, layer)}


def loaded_after_importing(names: list[str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_LIST, *names],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def imported_names(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Every module an import statement in ``source`` names, relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` may name module a.b or attribute b of a: both count.
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def test_the_layers_each_hold_modules():
    # Guards the checks below against passing vacuously after a rename.
    assert "modelwatch.local.demo" in modules_of("modelwatch.local")
    assert "modelwatch.modeling.training" in modules_of("modelwatch.modeling")
    assert "modelwatch.monitor" in modules_of("runtime")
    assert not any(is_within(name, "modelwatch.cli") for name in modules_of("runtime"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_importing_a_layer_loads_nothing_it_must_not_depend_on(layer):
    # Given every module of the layer, imported in a fresh interpreter
    loaded = loaded_after_importing(sorted(modules_of(layer)))

    # Then the packages it must not reach were never loaded, not even transitively
    assert set(modules_of(layer)) <= set(loaded)
    reached = [name for name in loaded if any(is_within(name, banned) for banned in FORBIDDEN[layer])]
    assert not reached, f"importing {layer} loaded {reached}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_deferred_import_points_the_wrong_way(layer):
    offending = [
        f"{path.relative_to(PACKAGE_DIR.parent)}:{line} imports {name}"
        for module, path in modules_of(layer).items()
        for line, name in imported_names(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
        if any(is_within(name, banned) for banned in FORBIDDEN[layer])
    ]
    assert not offending, "\n".join(offending)


def test_the_import_reader_sees_imports_inside_functions():
    # It is what catches deferred imports, so it must find them, relative ones included.
    source = "def later():\n    from modelwatch.cli.main import main\n    from ..cli import main\n"
    names = [name for _, name in imported_names(source, "modelwatch.local.demo")]
    assert names.count("modelwatch.cli.main") == 2
