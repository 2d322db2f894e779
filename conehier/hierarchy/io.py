"""Reading and writing hierarchies as edge-list text files.

Format: one ``parent<TAB>child`` pair per line (any whitespace if no tab);
blank lines and lines starting with ``#`` are ignored. Names may contain spaces
when the file is tab separated.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import HierarchyError
from .graph import Hierarchy


def read_edge_list(path: str | os.PathLike, *, child_first: bool = False, name: str | None = None) -> Hierarchy:
    """Hierarchy from an edge-list file (``parent child`` per line, or ``child parent`` with ``child_first``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"edge-list file not found: {path}")
    pairs = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                raise HierarchyError(f"{path}:{lineno}: expected two columns (parent, child), got {line!r}")
            a, b = parts[0].strip(), parts[1].strip()
            pairs.append((b, a) if child_first else (a, b))
    if not pairs:
        raise HierarchyError(f"{path}: no edges found; the hierarchy would be empty")
    return Hierarchy.from_edges(pairs, name=name or path.name)


def write_edge_list(hierarchy: Hierarchy, path: str | os.PathLike, *, basic: bool = False) -> Path:
    """Write ``parent<TAB>child`` lines (names); returns the path."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as fh:
        for p, c in hierarchy.to_edge_list(names=True, basic=basic):
            fh.write(f"{p}\t{c}\n")
    return path
