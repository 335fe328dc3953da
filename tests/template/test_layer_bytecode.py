"""The runtime layer's bytecode step: what it ships, and that the build goes on without it.

scripts/layer_bytecode.py and scripts/python313.py run as the Makefile runs them, on
small trees made here; the full layer is checked in test_build.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import REPO_ROOT, host_machine

SCRIPTS = REPO_ROOT / "scripts"
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def write_package(root: Path) -> None:
    """A package with a module that fails at run time (for its traceback) and a file that
    does not compile (Python 2), which must keep its source."""
    package = root / "fakepkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from fakepkg.core import answer\n", encoding="utf-8")
    (package / "core.py").write_text(
        textwrap.dedent(
            """
            def answer():
                return 42

            def fail():
                raise ValueError("from the layer")
            """
        ),
        encoding="utf-8",
    )
    (package / "legacy_py2.py").write_text('print "not Python 3"\n', encoding="utf-8")
    (package / "data.json").write_text("{}", encoding="utf-8")


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )


def test_compiled_layer_keeps_only_bytecode_and_imports_from_it(tmp_path):
    # Given a layer tree
    source = tmp_path / "tree" / "python"
    write_package(source)

    # When it is compiled by this machine's Python for a layer mounted at /opt/python
    result = run_script(
        str(SCRIPTS / "layer_bytecode.py"),
        str(source),
        str(tmp_path / "compiled" / "python"),
        "--python-version",
        THIS_PYTHON,
        "--interpreter",
        sys.executable,
    )

    # Then each module is a .pyc of that Python where its .py was, and the rest is untouched
    assert result.returncode == 0, result.stderr
    compiled = tmp_path / "compiled" / "python" / "fakepkg"
    assert sorted(path.name for path in compiled.iterdir()) == [
        "__init__.pyc",
        "core.pyc",
        "data.json",
        "legacy_py2.py",  # did not compile: kept as source
    ]
    assert (compiled / "core.pyc").read_bytes()[:4] == importlib.util.MAGIC_NUMBER
    assert (source / "fakepkg" / "core.py").is_file(), "the cached source tree was changed"
    assert "2 modules compiled" in result.stdout and "1 kept as source" in result.stdout

    # And a Python that writes no bytecode imports it, with tracebacks naming the Lambda path
    check = textwrap.dedent(
        """
        import traceback
        import fakepkg, fakepkg.core
        assert fakepkg.answer() == 42 and fakepkg.core.__file__.endswith("core.pyc")
        try:
            fakepkg.core.fail()
        except ValueError as error:
            print(traceback.extract_tb(error.__traceback__)[-1].filename)
        """
    )
    # The layer on the path the way Lambda puts /opt/python there: by the environment.
    imported = subprocess.run(
        [sys.executable, "-S", "-B", "-c", check],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "compiled" / "python")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "/opt/python/fakepkg/core.py"


def test_without_an_interpreter_the_layer_build_warns_and_ships_the_sources(tmp_path):
    # Given a cached, pruned layer tree as the Makefile leaves it (newer than its inputs)
    cache = tmp_path / "cache"
    tree = cache / "runtime-layer" / f"cp{THIS_PYTHON.replace('.', '')}-{host_machine()}"
    write_package(tree / "python")
    (tree / ".complete").touch()

    def build(artifacts: Path, bytecode_python: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "make",
                "--no-print-directory",
                "-f",
                str(REPO_ROOT / "layers" / "runtime" / "Makefile"),
                "build-RuntimeLayer",
                f"ARTIFACTS_DIR={artifacts}",
                f"CACHE_DIR={cache}",
                f"PYTHON_VERSION={THIS_PYTHON}",
                f"ARCH={host_machine()}",
                f"PYTHON={sys.executable}",
                f"BYTECODE_PYTHON={bytecode_python}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            check=False,
        )

    # When the interpreter that should compile it does not exist
    without = build(tmp_path / "without", str(tmp_path / "no-such-python3"))

    # Then the build succeeds with a warning and the layer holds the sources
    assert without.returncode == 0, without.stderr
    assert "WARNING: the runtime layer ships WITHOUT bytecode" in without.stderr
    assert (tmp_path / "without" / "python" / "fakepkg" / "core.py").is_file()
    assert not list((tmp_path / "without").rglob("*.pyc"))

    # And once an interpreter is there, the next build compiles it
    with_interpreter = build(tmp_path / "with", sys.executable)
    assert with_interpreter.returncode == 0, with_interpreter.stderr
    assert (tmp_path / "with" / "python" / "fakepkg" / "core.pyc").is_file()
    assert not (tmp_path / "with" / "python" / "fakepkg" / "core.py").exists()


def test_python313_says_why_when_neither_path_nor_debian_can_provide_one(tmp_path):
    # Given no python3.13 on PATH and an apt-get that fails (no network, no Debian)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "dpkg-deb"):
        fake = bin_dir / tool
        fake.write_text("#!/bin/sh\necho 'E: could not resolve the mirror' >&2\nexit 100\n", encoding="utf-8")
        fake.chmod(0o755)
    environment = {**os.environ, "PATH": str(bin_dir)}

    # When asked for a CPython 3.13
    result = run_script(
        str(SCRIPTS / "python313.py"), "--cache-dir", str(tmp_path / "cache"), env=environment
    )

    # Then it fails with the reason, prints no command, and leaves nothing half-made in the cache
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no CPython 3.13" in result.stderr and "could not resolve the mirror" in result.stderr
    assert not list((tmp_path / "cache").rglob("*.deb"))
    assert not list((tmp_path / "cache").rglob("root"))
