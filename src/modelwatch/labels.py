"""Labels are compared by value, not by their text.

Actuals arrive as CSV text, DynamoDB numbers (Decimal) or JSON values, while a model's
classes may be ints, floats, bools or strings. For a model with numeric classes ``1``,
``1.0``, ``"1"`` and ``Decimal("1")`` are the same label; for boolean classes so are
``True``, ``"true"`` and ``1``. Text classes match their exact text first, so classes
such as ``"01"`` and ``"1"`` stay distinct.

Text that differs from a text class only by case or surrounding spaces (``"Yes"`` for
the class ``"yes"``) matches it too, as upstream exports capitalise at will; where two
classes differ only by case (``"Yes"`` and ``"yes"``) nothing but their exact text does.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

_BOOLEAN_TEXT = {"true": Decimal(1), "false": Decimal(0)}


def _text(value: Any) -> str:
    return str(value).strip()


def _folded(text: str) -> str:
    return text.strip().casefold()


def _value_key(value: Any) -> Decimal | str:
    """A hashable key equal for values that mean the same label."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, Decimal):
        return value.normalize() if value.is_finite() else _text(value)
    text = _text(value)
    if text.lower() in _BOOLEAN_TEXT:
        return _BOOLEAN_TEXT[text.lower()]
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    return number.normalize() if number.is_finite() else text


class LabelNormaliser:
    """Maps raw actual values onto the model's classes (or floats for regression)."""

    def __init__(self, classes: Iterable[Any] | None):
        self.classes = list(classes) if classes is not None else None
        self._by_text: dict[str, Any] = {}
        self._by_value: dict[Decimal | str, Any] = {}
        self._by_folded_text: dict[str, Any] = {}
        ambiguous: set[Decimal | str] = set()
        ambiguous_folded: set[str] = set()
        for label in self.classes or ():
            if isinstance(label, str):
                self._by_text[_text(label)] = label
                folded = _folded(label)
                if folded in self._by_folded_text and self._by_folded_text[folded] != label:
                    ambiguous_folded.add(folded)  # "Yes" and "yes": "YES" could be either
                self._by_folded_text[folded] = label
            key = _value_key(label)
            if key in self._by_value and self._by_value[key] != label:
                ambiguous.add(key)  # e.g. "01" and "1": only their exact text identifies them
            self._by_value[key] = label
        for key in ambiguous:
            del self._by_value[key]
        for folded in ambiguous_folded:
            del self._by_folded_text[folded]

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
        if isinstance(value, str):
            exact = self._by_text.get(_text(value))
            if exact is not None:
                return exact
        by_value = self._by_value.get(_value_key(value))
        if by_value is not None or not isinstance(value, str):
            return by_value
        return self._by_folded_text.get(_folded(value))
