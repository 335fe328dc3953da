"""One loader for the sample events in events/, shared by tests and `sam local invoke -e`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"


def load_event(name: str) -> dict[str, Any]:
    """The event events/<name>.json as a dict."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
