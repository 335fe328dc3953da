"""`modelwatch demo`, `modelwatch local up`, `modelwatch replay` (UNDER CONSTRUCTION: issue 3)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """The local-cloud commands are added here."""
