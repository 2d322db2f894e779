"""Published tables stored as data: the exact configuration of every cell beside the paper's number.

One JSON file per table in this package (``<name>.json``). A file holds::

    name, description, reference {citation, table, url}, notes [..]
    hierarchy      SPEC as for ``conehier info`` (WordNet specs use the published split files)
    train_percent  share of non-basic edges in train (a cell may override it)
    metrics        [{name, source, label, scale, digits}]: ``source`` is a dotted path into
                   ``EmbedResult.metrics`` (``test_f1``, ``reconstruction.tpr``); ours is
                   ``scale * value``, on the paper's scale
    eval           EvalConfig fields (which protocols run after training)
    defaults       ModelConfig / TrainConfig fields for every cell
    model_defaults {model: fields} on top of ``defaults``
    quick          fields on top of everything for ``--quick`` (a short smoke run)
    cells          [{id, model, dim, row, col, train_percent?, config?, paper {metric: value}, paper_note?}]

A cell's configuration is ``make_config(model, dim, **defaults, **model_defaults[model],
**cell.config)`` (``+ quick``), so the library's per-geometry defaults fill only the
fields a file leaves out; the runner records the fully resolved configuration with
every result.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..pipeline import make_config
from ..training.config import EmbedConfig, EvalConfig

#: fields that say where or how fast a run goes, not what it computes (left out of comparisons)
MACHINE_FIELDS = ("device", "threads")

_TABLE_KEYS = {
    "name", "description", "reference", "notes", "hierarchy", "train_percent", "metrics", "eval", "defaults",
    "model_defaults", "quick", "cells",
}
_CELL_KEYS = {"id", "model", "dim", "row", "col", "train_percent", "config", "paper", "paper_note"}
_METRIC_KEYS = {"name", "source", "label", "scale", "digits"}


@dataclass(frozen=True)
class Metric:
    """One reported number per cell: ``scale * EmbedResult.metrics[source]``."""

    name: str
    source: str
    label: str
    scale: float = 1.0
    digits: int = 4

    def extract(self, metrics: dict) -> float:
        """Our value on the paper's scale, read from an ``EmbedResult.metrics`` dict."""
        v = metrics
        for part in self.source.split("."):
            if not isinstance(v, dict) or part not in v:
                raise KeyError(f"metric {self.name!r}: {self.source!r} not in the run's metrics")
            v = v[part]
        return float(v) * self.scale

    def fmt(self, value) -> str:
        return "—" if value is None else f"{value:.{self.digits}f}"


@dataclass(frozen=True)
class Cell:
    id: str
    model: str
    dim: int
    row: str
    col: str
    train_percent: float
    config: dict
    paper: dict
    paper_note: str | None = None


@dataclass
class Table:
    """A published table: its protocol, the configuration of every cell and the paper's numbers."""

    name: str
    description: str
    hierarchy: str
    metrics: list[Metric]
    cells: list[Cell]
    reference: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    eval: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    model_defaults: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)
    path: Path | None = None

    # --------------------------------------------------------------- loading
    @classmethod
    def from_dict(cls, d: dict, path: Path | None = None) -> "Table":
        where = f"{path}" if path else f"table {d.get('name', '?')!r}"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a JSON object")
        unknown = set(d) - _TABLE_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("name", "description", "hierarchy", "metrics", "cells"):
            if key not in d:
                raise ValueError(f"{where}: missing {key!r}")
        metrics = []
        for m in d["metrics"]:
            bad = set(m) - _METRIC_KEYS
            if bad or "name" not in m:
                raise ValueError(f"{where}: a metric needs 'name' (and only {sorted(_METRIC_KEYS)}), got {m}")
            metrics.append(Metric(name=m["name"], source=m.get("source", m["name"]), label=m.get("label", m["name"]),
                                  scale=float(m.get("scale", 1.0)), digits=int(m.get("digits", 4))))
        cells = []
        for c in d["cells"]:
            bad = set(c) - _CELL_KEYS
            if bad:
                raise ValueError(f"{where}: cell {c.get('id', '?')!r} has unknown key(s) {', '.join(sorted(bad))}")
            for key in ("id", "model", "dim", "paper"):
                if key not in c:
                    raise ValueError(f"{where}: cell {c.get('id', '?')!r} lacks {key!r}")
            cells.append(Cell(
                id=c["id"], model=c["model"], dim=int(c["dim"]), row=c.get("row", c["model"]), col=c.get("col", f"d={c['dim']}"),
                train_percent=float(c.get("train_percent", d.get("train_percent", 0))), config=dict(c.get("config", {})),
                paper=dict(c["paper"]), paper_note=c.get("paper_note"),
            ))
        t = cls(
            name=d["name"], description=d["description"], hierarchy=d["hierarchy"], metrics=metrics, cells=cells,
            reference=dict(d.get("reference", {})), notes=list(d.get("notes", [])), eval=dict(d.get("eval", {})),
            defaults=dict(d.get("defaults", {})), model_defaults=dict(d.get("model_defaults", {})),
            quick=dict(d.get("quick", {})), path=path,
        )
        t.validate()
        return t

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Table":
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not valid JSON ({exc})") from None
        return cls.from_dict(d, path=p)

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError unless every cell is complete and its configuration loads."""
        where = str(self.path) if self.path else f"table {self.name!r}"
        if not self.metrics:
            raise ValueError(f"{where}: no metrics")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: duplicate metric names {names}")
        if not self.cells:
            raise ValueError(f"{where}: no cells")
        ids = [c.id for c in self.cells]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"{where}: duplicate cell id(s) {', '.join(dup)}")
        seen = {}
        for c in self.cells:
            if "," in c.id or not c.id.strip():
                raise ValueError(f"{where}: bad cell id {c.id!r} (no commas, not empty)")
            missing = [m for m in names if not isinstance(c.paper.get(m), (int, float)) or isinstance(c.paper.get(m), bool)]
            if missing:
                raise ValueError(f"{where}: cell {c.id!r} has no paper number for {', '.join(missing)}")
            extra = set(c.paper) - set(names)
            if extra:
                raise ValueError(f"{where}: cell {c.id!r} has paper numbers for unknown metric(s) {sorted(extra)}")
            if (c.row, c.col) in seen:
                raise ValueError(f"{where}: cells {seen[(c.row, c.col)]!r} and {c.id!r} share row/col {(c.row, c.col)}")
            seen[(c.row, c.col)] = c.id
            for quick in (False, True):
                try:
                    self.config(c, quick=quick)
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{where}: cell {c.id!r}{' (quick)' if quick else ''}: {exc}") from None
        ev = EvalConfig.from_dict(self.eval)
        if ev.reconstruction_positives not in ("basic", "closure", "both"):
            raise ValueError(f"{where}: eval.reconstruction_positives must be 'basic', 'closure' or 'both'")
        if ev.reconstruction_positives != "both" and any(
                m.source.startswith("reconstruction_closure.") for m in self.metrics):
            raise ValueError(f"{where}: a metric reads reconstruction_closure, but eval.reconstruction_positives "
                             f"is not 'both'")
        if ev.reconstruction is False and any(m.source.startswith("reconstruction.") for m in self.metrics):
            raise ValueError(f"{where}: a metric reads the reconstruction, but eval.reconstruction is false")

    # ------------------------------------------------------------- cells
    def cell(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.id == cell_id:
                return c
        close = difflib.get_close_matches(cell_id, [c.id for c in self.cells], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; cells: {', '.join(c.id for c in self.cells)}"
        raise LookupError(f"table {self.name!r} has no cell {cell_id!r}{hint}")

    def select(self, patterns=None) -> list[Cell]:
        """The cells named by ``patterns`` (ids or shell globs, comma lists allowed), in table order."""
        if not patterns:
            return list(self.cells)
        wanted = [p.strip() for item in ([patterns] if isinstance(patterns, str) else patterns)
                  for p in str(item).split(",") if p.strip()]
        chosen = set()
        for p in wanted:
            hits = [c.id for c in self.cells if fnmatch.fnmatchcase(c.id, p)]
            if not hits:
                self.cell(p)  # raises LookupError with close matches
            chosen.update(hits)
        return [c for c in self.cells if c.id in chosen]

    def overrides(self, cell: Cell, *, quick: bool = False) -> dict:
        """The ModelConfig / TrainConfig fields a cell sets on top of ``make_config``'s defaults."""
        o = {**self.defaults, **self.model_defaults.get(cell.model, {}), **cell.config}
        if quick:
            o.update(self.quick)
        return o

    def config(self, cell: Cell, *, quick: bool = False, **machine) -> EmbedConfig:
        """The cell's :class:`EmbedConfig` (``machine``: ``device=`` / ``threads=``, recorded but not compared)."""
        bad = set(machine) - set(MACHINE_FIELDS)
        if bad:
            raise ValueError(f"only {MACHINE_FIELDS} may be set from outside a table, got {sorted(bad)}")
        o = self.overrides(cell, quick=quick)
        o.update({k: v for k, v in machine.items() if v is not None})
        cfg = make_config(cell.model, cell.dim, **o)
        cfg.eval = EvalConfig.from_dict(self.eval)
        return cfg

    def protocol(self, cell: Cell, *, quick: bool = False) -> dict:
        """What decides a cell's numbers: hierarchy, split and the resolved config (minus machine fields)."""
        cfg = self.config(cell, quick=quick).to_dict()
        for k in MACHINE_FIELDS:
            cfg["train"].pop(k, None)
        return {"hierarchy": self.hierarchy, "train_percent": cell.train_percent, "config": cfg}

    def paper(self) -> dict:
        return {c.id: dict(c.paper) for c in self.cells}

    def to_summary(self) -> dict:
        return {"name": self.name, "description": self.description, "cells": len(self.cells),
                "hierarchy": self.hierarchy, "reference": self.reference}


# ------------------------------------------------------------------ registry
def table_files() -> list[Path]:
    """The JSON table files shipped in this package, sorted by name."""
    root = resources.files(__package__)
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".json"))


def table_names() -> list[str]:
    return [p.stem for p in table_files()]


def load_table(name_or_path: str | os.PathLike) -> Table:
    """A packaged table by name (``conehier list``), or a table file by path."""
    s = str(name_or_path)
    for p in table_files():
        if p.stem == s:
            t = Table.load(p)
            if t.name != p.stem:
                raise ValueError(f"{p}: file name and table name {t.name!r} differ")
            return t
    p = Path(s)
    if p.suffix == ".json" and p.is_file():
        return Table.load(p)
    if p.suffix == ".json":
        raise FileNotFoundError(f"table file {p} not found")
    names = table_names()
    close = difflib.get_close_matches(s, names, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"tables: {', '.join(names)}"
    raise LookupError(f"unknown table {s!r}; {hint} (or give the path of a table .json file)")


def list_tables() -> list[Table]:
    return [load_table(n) for n in table_names()]
