"""Compile a built runtime layer to bytecode for the Python that will run it.

Lambda mounts layers read-only, so a layer without bytecode makes every cold start
compile pandas, scipy, scikit-learn and Powertools from source, and again on the next
cold start. The runtime layer therefore ships them compiled, by a CPython of the
runtime's own minor version (python313.py finds a 3.13 when the build runs on another
Python): bytecode carries that version's magic number and is ignored by any other,
but it is the same on every architecture.

Only the .pyc files ship, as "legacy" .pyc beside where the .py was (compileall -b),
which Python imports when no source is there. Sources and bytecode together would not
fit: measured on the pruned cp313 aarch64 layer, sources alone are 214.9 MiB, bytecode
alone 217.9 MiB and both 257.2 MiB, over Lambda's 250 MiB for a function and all its
layers before the model is counted. The price is that tracebacks through third-party
code show file and line but not the source line. A .py that does not compile is kept
as it is (Python compiles it at import, as before).

The file names recorded in the bytecode, which tracebacks print, are the paths the
files have in Lambda (--path-prefix, /opt/python), not the build directory's.

When no interpreter of that version can be had, the layer is left without bytecode and
a warning says so: the build goes on, cold starts are only slower. This exits 0 then
and does not create the destination; the Makefile ships the sources instead.

    python scripts/layer_bytecode.py SOURCE_DIR DEST_DIR [--python-version 3.13]
        [--interpreter 'CMD'] [--path-prefix /opt/python]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import python313  # beside this script, which Python puts on sys.path

MIB = 1024 * 1024


def interpreter_for(version: str, given: str | None, cache_dir: Path) -> list[str]:
    """The command of a CPython of that version; python313.Unavailable when none."""
    if given is not None:
        command = shlex.split(given)
    elif version == ".".join(map(str, python313.VERSION)):
        command = python313.find_python313(cache_dir)
    else:
        raise python313.Unavailable(f"no interpreter given for Python {version} (pass --interpreter)")
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        result = subprocess.run(
            [*command, "-S", "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise python313.Unavailable(f"{shlex.join(command)} does not run: {error}") from error
    if result.returncode != 0 or result.stdout.strip() != version:
        said = result.stdout.strip() or result.stderr.strip()[-300:]
        raise python313.Unavailable(f"{shlex.join(command)} is not Python {version} ({said})")
    return command


def tree_bytes(directory: Path) -> int:
    return sum(
        path.stat().st_size for path in directory.rglob("*") if path.is_file() and not path.is_symlink()
    )


# Run by the target interpreter: compile every .py beside itself, then check that what it
# wrote is its own bytecode (the magic number) before any source is removed.
COMPILE = """
import compileall, importlib.util, pathlib, sys
tree, prefix = pathlib.Path(sys.argv[1]), sys.argv[2]
compileall.compile_dir(tree, quiet=1, legacy=True, stripdir=str(tree), prependdir=prefix, workers=1)
foreign = [str(path) for path in tree.rglob("*.pyc") if path.read_bytes()[:4] != importlib.util.MAGIC_NUMBER]
assert not foreign, f"bytecode of another Python: {foreign[:5]}"
print(importlib.util.MAGIC_NUMBER.hex())
"""


def compile_layer(source: Path, destination: Path, command: list[str], path_prefix: str) -> None:
    """destination = source with every .py replaced by its .pyc; made whole or not at all."""
    staging = destination.with_name(destination.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, staging, symlinks=True)
    # compile_dir's result is ignored: a file that does not compile keeps its source below.
    result = subprocess.run(
        [*command, "-S", "-c", COMPILE, str(staging), path_prefix],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"compiling {source} failed:\n{(result.stderr or result.stdout)[-3000:]}")
    magic = result.stdout.strip().splitlines()[-1]
    compiled = kept = 0
    for path in staging.rglob("*.py"):
        if path.with_suffix(".pyc").is_file():
            path.unlink()
            compiled += 1
        else:
            kept += 1
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
    print(
        f"layer_bytecode: {compiled:,} modules compiled (magic {magic}), sources removed; "
        f"{kept} kept as source (did not compile); {tree_bytes(source) / MIB:.1f} MiB of sources "
        f"-> {tree_bytes(destination) / MIB:.1f} MiB with bytecode only"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the built, pruned layer tree")
    parser.add_argument("destination", type=Path, help="where the compiled copy goes (replaced)")
    parser.add_argument("--python-version", default="3.13", help="the Python that will import the layer")
    parser.add_argument("--interpreter", help="command of a Python of that version (default: python313.py's)")
    parser.add_argument("--path-prefix", default="/opt/python", help="the tree's path at run time")
    parser.add_argument("--cache-dir", type=Path, default=python313.DEFAULT_CACHE_DIR)
    options = parser.parse_args(argv)
    try:
        command = interpreter_for(options.python_version, options.interpreter, options.cache_dir)
    except python313.Unavailable as reason:
        print(
            f"WARNING: the runtime layer ships WITHOUT bytecode, so every cold start compiles "
            f"pandas, scipy and scikit-learn from source (seconds slower): {reason}",
            file=sys.stderr,
        )
        return 0
    compile_layer(options.source, options.destination, command, options.path_prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
