"""The batch monitor's /tmp directory: a killed process's leftovers go, a live one's stay."""

from pathlib import Path


def test_a_new_workspace_removes_only_the_directories_of_dead_processes(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import tempfile

    from modelwatch import monitor

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = tmp_path / f"modelwatch-{finished.stdout.strip()}-abc-x"  # its process has exited
    earlier_life = tmp_path / f"modelwatch-{os.getpid()}-0123456789ab-x"  # this pid, another process
    running = tmp_path / f"modelwatch-{os.getppid()}-def-x"  # a live process's (pytest's parent)
    for directory in (dead, earlier_life, running):
        directory.mkdir()
        (directory / "batch").write_bytes(b"x" * 10)
    workspace = monitor.new_workspace()
    assert not dead.exists() and not earlier_life.exists() and running.exists()
    assert Path(workspace.name).parent == tmp_path
    workspace.cleanup()
