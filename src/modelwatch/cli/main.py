"""Entry point of the `modelwatch` command.

Each command group lives in its own module and registers itself through
``register(subparsers)``; its handler is stored as ``func`` and returns an exit code.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys

from modelwatch.errors import UserError

# Modules that add command groups; each has register(subparsers).
COMMAND_MODULES = (
    "modelwatch.cli.model_commands",
    "modelwatch.cli.actuals_commands",
    "modelwatch.cli.local_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelwatch",
        description="Monitor scikit-learn models on AWS: package models, load actuals, run the local cloud.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserError as problem:
        print(f"modelwatch: error: {problem}", file=sys.stderr)
        return 2


def run() -> None:
    """The console script: main(), then exit without a last garbage collection.

    A demo leaves pandas, scikit-learn, matplotlib and moto's tables on the heap; the
    interpreter's final collections over them took ~2 s after the output was complete.
    Freezing the heap skips them; files and streams are closed as usual.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
