"""A CPython 3.13 for building the Lambda runtime layer, without installing one.

Bytecode is specific to the CPython minor version that writes it (its magic number),
not to the machine: the layer's .pyc files must come from a 3.13, Lambda's runtime,
whatever Python the build runs on. And measuring the layer's cold start honestly
needs a 3.13 that can import it. This finds one, in this order:

1. a ``python3.13`` on PATH that runs and says it is CPython 3.13 (a pyenv shim for a
   version that is not selected is on PATH but does not run);
2. Debian 13 (trixie)'s own python3.13 packages, fetched with ``apt-get download``
   and unpacked with ``dpkg-deb -x`` under the cache directory, with the C library and
   the other libraries they link against, run through the unpacked dynamic loader:
   nothing is installed and the system's apt configuration and lists are not touched
   (apt reads a source list and keeps its lists in the cache directory). Debian 12 and
   later, Ubuntu and any machine with apt and dpkg can do this; it needs the Debian
   archive key for trixie, which Debian 12's debian-archive-keyring carries.

The packages are not pinned to versions: the archive keeps only the current version of
each (security updates replace it), so a pinned .deb would stop downloading. What is
pinned is what the bytecode depends on, the suite (Debian 13) and CPython 3.13; the
versions fetched are printed and kept in the cache directory's versions.txt.

Run as a script it prints the command that runs the interpreter, or runs it with the
arguments after ``--``::

    python scripts/python313.py                  # prints the command
    python scripts/python313.py -- -c 'import sys; print(sys.version)'

It exits 1 with the reason on stderr when no 3.13 can be had (no apt, no network, no key).
"""

from __future__ import annotations

import argparse
import os
import platform
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERSION = (3, 13)
DEBIAN_SUITE = "trixie"  # Debian 13, whose default Python is 3.13
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".build" / "python3.13"

PACKAGES = (
    # The interpreter (statically linked with libpython) and the part of the standard
    # library that compileall needs.
    "python3.13-minimal",
    "libpython3.13-minimal",
    # The rest of the standard library: importing pandas, scikit-learn, skops, boto3 and
    # Powertools needs ctypes, decimal, lzma, bz2, ssl, uuid, concurrent, zoneinfo...
    "libpython3.13-stdlib",
    # What the interpreter and those extension modules link against, from the same
    # release, so they never meet this machine's older C library. libstdc++ and libgcc
    # are what manylinux wheels (numpy, scipy, scikit-learn) expect from the system.
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "zlib1g",
    "libexpat1",
    "libssl3t64",
    "libffi8",
    "libbz2-1.0",
    "liblzma5",
    "libmpdec4",
    "libuuid1",
)

# Debian's architecture names for the machines Lambda and developers run on.
DEBIAN_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class Unavailable(Exception):
    """No CPython 3.13 can be had on this machine; the message says why."""


def warn(message: str) -> None:
    print(f"python313: {message}", file=sys.stderr)


def is_python313(command: list[str]) -> bool:
    """Whether the command starts a CPython 3.13 (running it is the only sure test)."""
    probe = "import sys; print(sys.implementation.name, *sys.version_info[:2])"
    try:
        result = subprocess.run(
            [*command, "-S", "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.split() == ["cpython", *map(str, VERSION)]


def python313_on_path() -> list[str] | None:
    found = shutil.which("python3.13")
    return [found] if found and is_python313([found]) else None


def debian_architecture() -> str:
    machine = platform.machine().lower()
    if machine not in DEBIAN_ARCHITECTURES:
        raise Unavailable(f"no Debian packages known for this machine ({machine})")
    return DEBIAN_ARCHITECTURES[machine]


def unpacked_command(root: Path) -> list[str]:
    """Run the unpacked interpreter through the unpacked loader, with the unpacked libraries
    first: the binary needs a newer C library than this machine may have."""
    loaders = sorted(root.glob("usr/lib/*-linux-gnu/ld-linux*.so.*"))
    if not loaders:
        raise Unavailable(f"no dynamic loader in {root}/usr/lib/*-linux-gnu (libc6 did not unpack)")
    library_dir = loaders[0].parent
    return [str(loaders[0]), "--library-path", str(library_dir), str(root / "usr" / "bin" / "python3.13")]


def apt_options(work_dir: Path) -> list[str]:
    """apt-get options that read only our source list and keep every list, lock and
    download under work_dir: the machine's own apt state is neither read nor changed."""
    lists, cache = work_dir / "lists", work_dir / "cache"
    for directory in (lists / "partial", cache / "archives" / "partial"):
        directory.mkdir(parents=True, exist_ok=True)
    sources = work_dir / "sources.list"
    mirror = os.environ.get("DEBIAN_MIRROR", DEFAULT_MIRROR)
    sources.write_text(f"deb [signed-by={KEYRING}] {mirror} {DEBIAN_SUITE} main\n", encoding="utf-8")
    status = work_dir / "status"  # empty: apt must not think anything is installed
    status.touch()
    settings = {
        "Dir::Etc::sourcelist": sources,
        "Dir::Etc::sourceparts": "-",
        "Dir::Etc::preferences": work_dir / "preferences",  # the machine's pins are for its own release
        "Dir::Etc::preferencesparts": "-",
        "Dir::State::Lists": lists,
        "Dir::State::status": status,
        "Dir::Cache": cache,
        "Debug::NoLocking": "1",  # our own directories: no lock on the machine's apt is needed
        "APT::Sandbox::User": pwd.getpwuid(os.geteuid()).pw_name,  # it writes to work_dir as us
        "Acquire::Languages": "none",
    }
    return [option for name, value in settings.items() for option in ("-o", f"{name}={value}")]


def run_tool(command: list[str], what: str, timeout_seconds: int, cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout_seconds, cwd=cwd
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unavailable(f"{what}: {error}") from error
    if result.returncode != 0:
        raise Unavailable(
            f"{what} failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-800:]}"
        )
    return str(result.stdout)


def fetch_debian_python(target: Path) -> None:
    """Download, unpack and check Debian 13's python3.13 into target (created at the end)."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not on PATH (not a Debian-based machine)")
    if not KEYRING.is_file():
        raise Unavailable(f"{KEYRING} is missing (install debian-archive-keyring)")
    architecture = debian_architecture()
    # A staging directory of our own, renamed at the end: two builds fetching at once
    # (an arm64 and an x86_64 layer) never see or remove each other's half.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.staging.", dir=target.parent))
    try:
        unpack_into(staging, architecture)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except OSError as error:
        if not (target / "root").is_dir():  # not another build's finished fetch
            raise Unavailable(f"could not unpack into {target}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    versions = (target / "versions.txt").read_text(encoding="utf-8").split()
    print(
        f"python313: unpacked Debian {DEBIAN_SUITE}'s",
        *versions,
        f"into {target}",
        sep="\n  ",
        file=sys.stderr,
    )


def unpack_into(staging: Path, architecture: str) -> None:
    debs = staging / "debs"
    debs.mkdir(parents=True)
    options = [*apt_options(staging / "apt"), "-o", f"APT::Architecture={architecture}"]

    run_tool(
        ["apt-get", *options, "update"], f"apt-get update for Debian {DEBIAN_SUITE}", timeout_seconds=600
    )
    run_tool(["apt-get", *options, "download", *PACKAGES], "apt-get download", timeout_seconds=600, cwd=debs)
    root = staging / "root"
    versions = []
    for deb in sorted(debs.glob("*.deb")):
        run_tool(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}", timeout_seconds=300)
        versions.append(deb.name)
    command = unpacked_command(root)
    if not is_python313(command):
        raise Unavailable(f"the unpacked interpreter does not run: {shlex.join(command)}")
    # Debian compiles the standard library when the package is installed (py3compile);
    # unpacking skips that, and Lambda's runtime ships its standard library compiled.
    # Without -j: a worker process would start python3.13 without the unpacked loader.
    subprocess.run(
        [*command, "-m", "compileall", "-q", str(root / "usr" / "lib" / "python3.13")],
        capture_output=True,
        timeout=900,
        check=False,
    )
    shutil.rmtree(debs)
    shutil.rmtree(staging / "apt")
    (staging / "versions.txt").write_text("\n".join(versions) + "\n", encoding="utf-8")


def find_python313(cache_dir: Path = DEFAULT_CACHE_DIR) -> list[str]:
    """The command that runs a CPython 3.13: on PATH, else cached or fetched from Debian.

    Raises Unavailable with the reason when neither route works.
    """
    on_path = python313_on_path()
    if on_path:
        return on_path
    target = cache_dir / debian_architecture()
    if not (target / "root").is_dir():
        fetch_debian_python(target)
    command = unpacked_command(target / "root")
    if not is_python313(command):
        raise Unavailable(f"the cached interpreter in {target} does not run: delete it to fetch it again")
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then arguments for python3.13")
    options = parser.parse_args(argv)
    try:
        command = find_python313(options.cache_dir)
    except Unavailable as reason:
        warn(f"no CPython 3.13: {reason}")
        return 1
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    if not args:
        print(shlex.join(command))
        return 0
    return subprocess.run([*command, *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
