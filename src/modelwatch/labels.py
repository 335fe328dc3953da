"""Labels are compared by value, not by their text.

Actuals arrive as CSV text, DynamoDB numbers (Decimal) or JSON values, while a model's
classes may be ints, floats, bools or strings. A model with numeric classes treats
``1``, ``1.0``, ``"1"`` and ``Decimal("1")`` as the same label.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np


class LabelNormaliser:
    """Maps raw actual values onto the model's classes (or floats for regression)."""

    def __init__(self, classes: Iterable[Any] | None):
        self.classes = list(classes) if classes is not None else None
        self._lookup: dict[Any, Any] = {}
        if self.classes is not None:
            for label in self.classes:
                self._lookup[self._key(label)] = label

    @staticmethod
    def _key(value: Any) -> Any:
        """A hashable key equal for values that mean the same label."""
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool):
            return ("number", Decimal(int(value)))
        if isinstance(value, int | float | Decimal):
            return (
                ("number", Decimal(str(value)).normalize())
                if not isinstance(value, Decimal)
                else (
                    "number",
                    value.normalize(),
                )
            )
        text = str(value).strip()
        try:
            number = Decimal(text)
        except InvalidOperation:
            return ("text", text)
        if number.is_finite():
            return ("number", number.normalize())
        return ("text", text)

    def normalise(self, value: Any) -> Any:
        """The model's class equal to ``value``, or None when it matches no class."""
        if value is None:
            return None
        if self.classes is None:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return None
            return number if np.isfinite(number) else None
        return self._lookup.get(self._key(value))
