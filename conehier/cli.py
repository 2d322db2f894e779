"""The ``conehier`` command line: thin layers over the library.

Subcommands: ``info`` (hierarchy statistics), ``demo`` (the built-in default
job), ``embed`` (train and evaluate an embedding).
"""

from __future__ import annotations

import argparse
import json
import sys


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="data root (default: $CONEHIER_DATA, else the download cache)")


def cmd_info(args) -> int:
    from .data.registry import load_spec

    d = load_spec(args.spec, args.data_dir)
    stats = d.hierarchy.stats()
    stats["spec"] = args.spec
    if d.samples is not None:
        stats["samples"] = d.samples
    stats.update(d.meta)
    if args.json:
        print(json.dumps(stats, indent=None if args.compact else 2))
        return 0
    width = max(len(k) for k in stats)
    for k, v in stats.items():
        if isinstance(v, list) and k == "nodes_per_level":
            v = " / ".join(map(str, v))
        print(f"{k:<{width}}  {v}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(out=args.out, seed=args.seed, epochs=args.epochs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conehier", description="Hierarchy-aware representations.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print a hierarchy's statistics")
    p.add_argument("spec", help="toy:L,b | cifar10 | fashion-mnist | wordnet-mammal | wordnet-noun | ethec | hmc:NAME | PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--compact", action="store_true", help="with --json: on one line")
    _add_data_dir(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="embed a built-in hierarchy in 2-D with hyperbolic cones (no download)")
    p.add_argument("--out", default="conehier-demo", help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.set_defaults(func=cmd_demo)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, LookupError) as exc:
        print(f"conehier {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
