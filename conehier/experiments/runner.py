"""Run a published table's cells and write ``results.json`` / ``results.md`` (resumable).

>>> from conehier.experiments import reproduce
>>> results = reproduce("ethec-link-prediction", cells=["order-2"], quick=True)
>>> results["paper"]["order-2"], results["metrics"]["order-2"]

Each cell trains into ``OUT/cells/<id>/`` (``embed(out=...)``: an interrupted cell
resumes from its checkpoint). ``results.json`` is rewritten after every cell; a
cell already there with the same protocol (hierarchy, split, resolved config) is
skipped unless ``force``; a cell whose configuration changed since is run again.

Several processes may run cells of one table into the same ``OUT`` at once (one
per core): each cell is claimed with a lock file (a cell another process is
running is skipped), and each finished cell is merged into ``results.json`` under
a table lock, re-reading what the other processes wrote.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import time
import traceback
from pathlib import Path

import torch

from .. import __version__
from ..pipeline import embed
from ..training.config import EmbedConfig
from ..jsonutil import to_jsonable
from ..training.trainer import resolve_device
from . import report
from .tables import Table, load_table

try:  # POSIX advisory locks; elsewhere one process per output directory
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
#: errors that fail one cell (recorded, the others still run): divergence, CUDA out of memory
CELL_ERRORS = (FloatingPointError, RuntimeError)


def default_out(table: Table, quick: bool = False) -> Path:
    """``results/NAME`` (``results/NAME-quick`` for quick runs, so they never mix with full ones)."""
    return Path("results") / (table.name + ("-quick" if quick else ""))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device=None) -> dict:
    """Where a cell ran: CPU / GPU, thread count, library versions, and a short ``label``."""
    dev = torch.device(device) if device is not None else resolve_device(None)
    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "conehier": __version__,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(dev),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["cuda"] = torch.version.cuda
        info["label"] = f"{info['gpu']} (CUDA {info['cuda']})"
    else:
        n = info["torch_threads"]
        info["label"] = f"CPU {info['cpu']}, {n} thread{'s' if n != 1 else ''}"
    return info


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_results(out: str | os.PathLike) -> dict | None:
    p = Path(out) / RESULTS_JSON
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not valid JSON ({exc}); move it away to start over") from None


@contextlib.contextmanager
def _lock(path: Path, *, wait: bool = True):
    """Hold an exclusive lock on ``path`` (created); yields False when ``wait`` is off and it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        if fcntl is None:
            yield True
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fresh_results(table: Table, quick: bool, old: dict | None) -> dict:
    """The results dict with the table's current description, keeping the cell results of ``old``."""
    ids = [c.id for c in table.cells]
    old = old or {}
    res = {
        "table": table.name,
        "description": table.description,
        "reference": table.reference,
        "notes": table.notes,
        "hierarchy": table.hierarchy,
        "quick": quick,
        "metric_info": [{"name": m.name, "label": m.label, "scale": m.scale, "digits": m.digits} for m in table.metrics],
        "layout": {c.id: {"row": c.row, "col": c.col} for c in table.cells},
        "paper": table.paper(),
        "paper_notes": {c.id: c.paper_note for c in table.cells if c.paper_note},
        "metrics": {k: v for k, v in old.get("metrics", {}).items() if k in ids},
        "config": {k: v for k, v in old.get("config", {}).items() if k in ids},
        "cells": {k: v for k, v in old.get("cells", {}).items() if k in ids},
        "created": old.get("created", _now()),
        "conehier_version": __version__,
    }
    return res


def _finish(res: dict, out: Path) -> None:
    done = res["metrics"]
    res["wall_seconds"] = float(sum(res["cells"][c].get("wall_seconds", 0.0) for c in done))
    last = max((res["cells"][c] for c in done), key=lambda r: r.get("finished", ""), default=None)
    res["machine"] = last.get("machine") if last else None
    res["updated"] = _now()
    _write_atomic(out / RESULTS_JSON, json.dumps(to_jsonable(res), indent=2, ensure_ascii=False) + "\n")
    _write_atomic(out / RESULTS_MD, report.results_markdown(res))


def _record(out: Path, table: Table, quick: bool, command: str, cell_id: str, *,
            metrics: dict | None, config: dict | None, cell: dict) -> dict:
    """Merge one cell's outcome into ``OUT/results.json`` under the table lock; returns the merged dict.

    ``metrics`` None records a failure (any earlier numbers of the cell are dropped).
    """
    with _lock(out / ".results.lock"):
        res = _fresh_results(table, quick, load_results(out))
        res["command"] = command
        res["cells"][cell_id] = cell
        if metrics is None:
            res["metrics"].pop(cell_id, None)
        else:
            res["metrics"][cell_id] = metrics
            res["config"][cell_id] = config
        _finish(res, out)
    return res


def same_protocol(stored, current, defaults=None) -> bool:
    """Whether two protocols (nested dicts) agree.

    A key only ``current`` has (a config field added to the library after the stored
    run) agrees when its value is the field's default in ``defaults`` (same nesting;
    default: :func:`protocol_defaults`): the old run behaved as the default does. Set
    to anything else, the cell must run again. A key only ``stored`` has is ignored.
    """
    if defaults is None:
        defaults = protocol_defaults()
    if isinstance(stored, dict) and isinstance(current, dict):
        d = defaults if isinstance(defaults, dict) else {}
        for k, v in current.items():
            if k in stored:
                if not same_protocol(stored[k], v, d.get(k, _NO_DEFAULT)):
                    return False
            elif k not in d or not same_protocol(d[k], v, _NO_DEFAULT):
                return False
        return True
    return stored == current


_NO_DEFAULT = object()


def protocol_defaults() -> dict:
    """The default of every config field, nested as in a cell's protocol."""
    return {"config": to_jsonable(EmbedConfig().to_dict())}


def is_done(res: dict, table: Table, cell, quick: bool) -> bool:
    """Whether ``res`` holds ``cell``'s numbers for the protocol the table asks for now."""
    rec = res.get("cells", {}).get(cell.id)
    return (bool(rec) and cell.id in res.get("metrics", {}) and "protocol" in rec
            and same_protocol(rec["protocol"], to_jsonable(table.protocol(cell, quick=quick))))


def reproduce(
    table: Table | str,
    *,
    cells=None,
    out: str | os.PathLike | None = None,
    quick: bool = False,
    force: bool = False,
    device: str | None = None,
    threads: int | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    keep_checkpoints: bool = False,
    log=print,
) -> dict:
    """Run ``cells`` (default: all) of ``table`` into ``out`` and return the results dict.

    ``cells``: ids or shell globs (``"order-*"``), a list or a comma list. ``quick``
    runs the table's short smoke configuration. Cells done before (same protocol)
    are skipped unless ``force``. Checkpoints of finished cells are deleted unless
    ``keep_checkpoints``; their embeddings, metrics and history stay in ``OUT/cells/<id>``.
    """
    t = table if isinstance(table, Table) else load_table(table)
    selected = t.select(cells)
    out = Path(out) if out is not None else default_out(t, quick)
    old = load_results(out)
    if old is not None:
        if old.get("table") != t.name:
            raise ValueError(f"{out} holds results of table {old.get('table')!r}, not {t.name!r}: choose another --out")
        if bool(old.get("quick")) != quick:
            kind = "quick smoke" if old.get("quick") else "full"
            raise ValueError(f"{out} holds {kind} results: {'drop' if quick else 'add'} --quick or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    command = f"conehier reproduce {t.name}" + (" --quick" if quick else "")
    if threads:
        torch.set_num_threads(int(threads))
    n = len(selected)
    log(f"{t.name}: {n} of {len(t.cells)} cell(s){' (quick)' if quick else ''} -> {out}")
    for i, cell in enumerate(selected, 1):
        tag = f"[{i}/{n}] {cell.id}"
        with _lock(out / "cells" / f".{cell.id}.lock", wait=False) as mine:
            if not mine:
                log(f"{tag}: running in another process, skipped")
                continue
            with _lock(out / ".results.lock"):
                res = _fresh_results(t, quick, load_results(out))
            if is_done(res, t, cell, quick) and not force:
                log(f"{tag}: done before, skipped (--force to run it again)")
                continue
            res = _run_cell(t, cell, out, quick=quick, force=force, command=command, device=device, threads=threads,
                            data_dir=data_dir, progress=progress, keep_checkpoints=keep_checkpoints,
                            tag=tag, log=log)
    with _lock(out / ".results.lock"):
        res = _fresh_results(t, quick, load_results(out))
        res["command"] = command
        _finish(res, out)
    log("")
    log(report.text_table(res))
    log(f"\nwrote {out / RESULTS_JSON} and {out / RESULTS_MD}")
    return res


def _run_cell(t: Table, cell, out: Path, *, quick, force, command, device, threads, data_dir, progress,
              keep_checkpoints, tag, log) -> dict:
    """Train one cell into ``OUT/cells/<id>`` (resuming its checkpoint) and record it; returns the results."""
    cell_dir = out / "cells" / cell.id
    protocol = to_jsonable(t.protocol(cell, quick=quick))
    run_file = cell_dir / "protocol.json"
    stale = run_file.is_file() and not same_protocol(json.loads(run_file.read_text(encoding="utf-8")), protocol)
    if cell_dir.exists() and (force or stale or not run_file.is_file()):
        if stale:
            log(f"{tag}: configuration changed since the stored run: starting over")
        shutil.rmtree(cell_dir)
    resumed = (cell_dir / "checkpoints").is_dir()
    cell_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_file, json.dumps(protocol, indent=2) + "\n")
    cfg = t.config(cell, quick=quick, device=device, threads=threads)
    log(f"{tag}: {cell.model}, dim {cell.dim}, {cell.train_percent:g}% non-basic in train, "
        f"{cfg.train.epochs} epochs{' (resuming)' if resumed else ''}")
    t0 = time.perf_counter()
    try:
        result = embed(t.hierarchy, config=cfg, train_percent=cell.train_percent, data_dir=data_dir,
                       out=cell_dir, progress=progress)
    except CELL_ERRORS as exc:
        msg = f"{type(exc).__name__}: {exc}"
        (cell_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        res = _record(out, t, quick, command, cell.id, metrics=None, config=None,
                      cell={"error": msg, "protocol": protocol, "finished": _now(),
                            "machine": machine_info(cfg.train.device)})
        log(f"{tag}: FAILED ({msg}); traceback in {cell_dir / 'error.txt'}")
        return res
    wall = time.perf_counter() - t0
    m = result.metrics
    ours = {metric.name: metric.extract(m) for metric in t.metrics}
    rec = {
        "wall_seconds": wall,
        "train_seconds": m.get("train_seconds"),
        "seconds_per_epoch": m.get("seconds_per_epoch"),
        "epochs": m.get("epochs"),
        "best_epoch": m.get("best_epoch"),
        "resumed": resumed,
        "finished": _now(),
        "machine": machine_info(m.get("device")),
        "protocol": protocol,
        "run_dir": str(Path("cells") / cell.id),
        "command": f"{command} --cell {cell.id}",
        "raw_metrics": {k: v for k, v in m.items() if k != "history"},
    }
    if not keep_checkpoints:
        shutil.rmtree(cell_dir / "checkpoints", ignore_errors=True)
    res = _record(out, t, quick, command, cell.id, metrics=ours,
                  config={"hierarchy": t.hierarchy, "train_percent": cell.train_percent, **cfg.to_dict()}, cell=rec)
    parts = [f"{metric.label} paper {metric.fmt(cell.paper[metric.name])} ours {metric.fmt(ours[metric.name])}"
             for metric in t.metrics]
    log(f"{tag}: {'; '.join(parts)}  ({report.fmt_seconds(wall)}, {m.get('seconds_per_epoch', 0):.3f} s/epoch, "
        f"best epoch {m.get('best_epoch')})")
    return res


def plan(table: Table | str, *, cells=None, out=None, quick: bool = False) -> list[dict]:
    """What :func:`reproduce` would do: per selected cell its overrides, epochs and whether it is done."""
    t = table if isinstance(table, Table) else load_table(table)
    out = Path(out) if out is not None else default_out(t, quick)
    res = load_results(out) or {}
    rows = []
    for c in t.select(cells):
        cfg = t.config(c, quick=quick)
        rows.append({"cell": c.id, "model": c.model, "dim": c.dim, "train_percent": c.train_percent,
                     "epochs": cfg.train.epochs, "overrides": t.overrides(c, quick=quick),
                     "done": bool(res) and res.get("quick", False) == quick and is_done(res, t, c, quick),
                     "paper": c.paper})
    return rows
