"""README.md's commands name files that exist, so a reader can paste them as they are.

Two rules. A command run against the local cloud (`modelwatch replay|local|demo`, the AWS
CLI given `--endpoint-url`) must name only existing input files; any command naming a
path in one of the repository's own folders (samplefiles/, events/ ...) must name an
existing one. Outputs (after --out, --json, --results), KEY=VALUE settings and placeholders (<bucket>) are
not inputs; the deployment examples' `batch.csv` stand for the reader's own files.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
# Followed by an output path or a KEY=VALUE, not by a file the command reads.
NOT_INPUT_OPTIONS = {"--out", "--json", "--results", "--param", "--parameter-overrides", "--metadata"}
# Made by `make model` (or the first `make demo`) and git-ignored: a fresh clone lacks it.
GENERATED = {"layers/model/artifact"}
FILE_SUFFIX = re.compile(r"\.(csv|csv\.gz|jsonl|json|yaml|yml|joblib|skops|png|py)$")


def readme_commands(text: str) -> list[list[str]]:
    """Each shell command of the README's fenced code blocks, continuation lines joined, split."""
    commands = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue  # a diagram or a table, not a command
            if words:
                commands.append(words)
    return commands


def named_files(words: list[str]) -> list[str]:
    names = []
    for previous, word in zip(["", *words], words, strict=False):
        if (
            previous in NOT_INPUT_OPTIONS
            or "=" in word
            or word.startswith("-")
            or "://" in word
            or "<" in word
        ):
            continue
        if "/" in word or FILE_SUFFIX.search(word):
            names.append(word)
    return names


def runs_on_the_local_cloud(words: list[str]) -> bool:
    program = Path(words[0]).name
    if program == "modelwatch":
        return len(words) > 1 and words[1] in ("replay", "local", "demo")
    return program == "aws" and "--endpoint-url" in words


def missing(name: str) -> bool:
    return name.rstrip("/") not in GENERATED and not list(REPO_ROOT.glob(name))


def test_the_rules_catch_a_missing_file():
    commands = readme_commands(
        "```bash\nmodelwatch replay --model-dir layers/model/artifact --actuals actuals.csv \\\n"
        "    --json out/replay.json samplefiles/classification/batches/*.csv\n"
        "aws s3 cp batch.csv s3://bucket/incoming/batch.csv   # the reader's own file\n"
        "cat events/no-such-event.json\n```\n"
    )
    assert [[name for name in named_files(words) if missing(name)] for words in commands] == [
        ["actuals.csv"],
        ["batch.csv"],
        ["events/no-such-event.json"],
    ]
    assert [runs_on_the_local_cloud(words) for words in commands] == [True, False, False]


def test_readme_commands_name_existing_files():
    top_folders = {path.name for path in REPO_ROOT.iterdir() if path.is_dir()}
    problems = []
    for words in readme_commands((REPO_ROOT / "README.md").read_text(encoding="utf-8")):
        for name in named_files(words):
            in_our_folders = name.split("/")[0] in top_folders
            if (runs_on_the_local_cloud(words) or in_our_folders) and missing(name):
                problems.append(f"{' '.join(words)}: {name}")
    assert problems == []


def test_readme_links_to_files_that_exist():
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)\)", text)
    local = [target for target in targets if "://" not in target and not target.startswith("mailto:")]
    assert [target for target in local if not (REPO_ROOT / target).exists()] == []
