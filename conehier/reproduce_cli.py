"""``conehier reproduce`` and ``conehier list``: published tables, run from their data files.

``add_reproduce_parsers(subparsers)`` registers both subcommands on the main
parser; ``python -m conehier.reproduce_cli`` runs them on their own.

    conehier list                                   # name, description, number of cells
    conehier list ethec-reconstruction              # the table's cells: config and paper numbers
    conehier reproduce ethec-link-prediction        # every cell -> results/ethec-link-prediction/
    conehier reproduce ethec-link-prediction --quick --cell order-2
    conehier reproduce hyperbolic-cones-wordnet --cell 'hyperbolic-cones-*' --device cuda
    conehier reproduce ethec-reconstruction --dry-run
"""

from __future__ import annotations

import argparse
import sys


def cmd_list(args) -> int:
    from .experiments import list_tables, load_table

    if args.name:
        t = load_table(args.name)
        print(f"{t.name}: {t.description}")
        ref = t.reference
        if ref:
            print(f"source: {ref.get('citation', '')}, {ref.get('table', '')}")
        print(f"hierarchy: {t.hierarchy}; metrics: {', '.join(m.label for m in t.metrics)}")
        width = max(len(c.id) for c in t.cells)
        for c in t.cells:
            paper = " / ".join(m.fmt(c.paper[m.name]) for m in t.metrics)
            cfg = t.config(c).train
            note = "  *" if c.paper_note else ""
            print(f"  {c.id:<{width}}  paper {paper:<22}  {c.model} d={c.dim}, {c.train_percent:g}% non-basic, "
                  f"{cfg.optimizer} lr={cfg.lr:g}, batch {cfg.batch_size}, {cfg.epochs} epochs{note}")
        if any(c.paper_note for c in t.cells):
            print("  * " + "; ".join(sorted({c.paper_note for c in t.cells if c.paper_note})))
        return 0
    tables = list_tables()
    if args.json:
        import json

        print(json.dumps([t.to_summary() for t in tables], indent=2, ensure_ascii=False))
        return 0
    width = max(len(t.name) for t in tables)
    print(f"{'table':<{width}}  cells  description")
    for t in tables:
        print(f"{t.name:<{width}}  {len(t.cells):>5}  {t.description}")
    return 0


def cmd_reproduce(args) -> int:
    from .experiments import plan, reproduce
    from .experiments.runner import default_out
    from .experiments.tables import load_table

    table = load_table(args.name)
    if args.dry_run:
        out = args.out or default_out(table, args.quick)
        rows = plan(table, cells=args.cell, out=out, quick=args.quick)
        print(f"{table.name}: {len(rows)} of {len(table.cells)} cell(s){' (quick)' if args.quick else ''}, output {out}")
        for r in rows:
            state = "done" if r["done"] else "to run"
            print(f"  {r['cell']}: {state}; {r['model']} d={r['dim']}, {r['train_percent']:g}% non-basic, "
                  f"{r['epochs']} epochs; {r['overrides']}")
        return 0
    res = reproduce(
        table,
        cells=args.cell,
        out=args.out,
        quick=args.quick,
        force=args.force,
        device=args.device,
        threads=args.threads,
        data_dir=args.data_dir,
        progress=not args.no_progress,
        keep_checkpoints=args.keep_checkpoints,
    )
    selected = [c.id for c in table.select(args.cell)]
    failed = [c for c in selected if "error" in res["cells"].get(c, {}) and c not in res["metrics"]]
    if failed:
        print(f"conehier reproduce: {len(failed)} cell(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def add_reproduce_parsers(subparsers) -> None:
    """Register ``reproduce`` and ``list`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser("list", help="list the published tables conehier can reproduce")
    p.add_argument("name", nargs="?", help="show this table's cells (configuration and paper numbers)")
    p.add_argument("--json", action="store_true", help="one JSON list of the tables")
    p.set_defaults(func=cmd_list)

    p = subparsers.add_parser(
        "reproduce",
        help="reproduce a published table (all or some cells) and compare with the paper",
        description="Run the cells of a published table from its data file, print paper vs ours, and write "
        "results.json and results.md into --out. Cells done before are skipped (resumable); an interrupted "
        "cell resumes from its checkpoint.",
    )
    p.add_argument("name", help="a table from 'conehier list', or the path of a table .json file")
    p.add_argument("--cell", action="append", metavar="ID",
                   help="run only these cells: ids or globs ('order-*'), repeatable or comma separated")
    p.add_argument("--quick", action="store_true",
                   help="short smoke version (a few epochs per cell); default output results/NAME-quick")
    p.add_argument("--out", default=None, help="output directory (default: results/NAME)")
    p.add_argument("--force", action="store_true", help="run the selected cells again even when done")
    p.add_argument("--dry-run", action="store_true", help="show the selected cells and their settings; run nothing")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--data-dir", default=None, help="data root (default: $CONEHIER_DATA, else the download cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the training checkpoints of finished cells")
    p.set_defaults(func=cmd_reproduce)
