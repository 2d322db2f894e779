"""Exceptions raised for bad hierarchies and bad references to labels."""

from __future__ import annotations

import difflib
from typing import Iterable, Sequence


class HierarchyError(ValueError):
    """A hierarchy (or data referring to one) is malformed."""


class CycleError(HierarchyError):
    """The graph has a directed cycle; ``cycle`` lists its nodes in order."""

    def __init__(self, cycle: Sequence[str]):
        self.cycle = list(cycle)
        path = " -> ".join(self.cycle + self.cycle[:1])
        super().__init__(f"the hierarchy has a cycle: {path}")


class UnknownLabelError(HierarchyError, LookupError):
    """A label name (or id) that the hierarchy does not contain."""

    def __init__(self, label, known: Iterable[str] | None = None, where: str | None = None):
        self.label = label
        msg = f"unknown label {label!r}"
        if where:
            msg += f" ({where})"
        if known is not None and isinstance(label, str):
            close = difflib.get_close_matches(label, list(known), n=3)
            if close:
                msg += f"; did you mean {', '.join(map(repr, close))}?"
        super().__init__(msg)

    def __str__(self) -> str:  # LookupError would quote the message
        return self.args[0]
