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


def cmd_embed(args) -> int:
    from .pipeline import embed

    overrides = {
        "epochs": args.epochs,
        "seed": args.seed,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "device": args.device,
        "per_level": True if args.per_level else None,
        "init": args.init,
        "eval_every": args.eval_every,
        "K": args.K,
        "margin": args.margin,
        "parametrization": args.parametrization,
        "dtype": args.dtype,
        "threads": args.threads,
    }
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.replace("-", "_")] = value
    result = embed(
        args.hierarchy,
        args.model,
        args.dim,
        train_percent=args.train_percent,
        data_dir=args.data_dir,
        out=args.out,
        progress=not args.no_progress,
        **overrides,
    )
    m = result.metrics
    print(f"{args.model} on {args.hierarchy}, dim {args.dim}, {args.train_percent:g}% non-basic edges in train")
    print(f"  test F1 {100 * m['test_f1']:.2f}  (valid F1 {100 * m['valid_f1']:.2f}, best epoch {m['best_epoch']})")
    for r in (m[k] for k in ("reconstruction", "reconstruction_closure") if k in m):
        print(f"  reconstruction ({r['positives']} edges): TPR {r['tpr']:.4f}  TNR {r['tnr']:.4f}  F1 {r['f1']:.4f}  "
              f"mean rank {r['mean_rank']:.2f}  MAP {r['map']:.4f}")
    print(f"  {m['seconds_per_epoch']:.3f} s/epoch, {m['wall_seconds']:.1f} s in all on {m['device']}; results in {args.out}")
    if args.dim == 2:
        from .reporting.plots import plot_embedding

        path = plot_embedding(result, save=f"{args.out}/embedding.png")
        print(f"  plot: {args.out}/embedding.png")
    return 0


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

    p = sub.add_parser("embed", help="train and evaluate an embedding of a hierarchy")
    p.add_argument("--hierarchy", required=True, help="SPEC as for 'conehier info' (WordNet uses the published splits)")
    p.add_argument("--model", required=True, choices=["order", "euclidean-cones", "euclidean-cones-cosine", "hyperbolic-cones", "poincare"])
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--train-percent", type=float, default=0.0, help="share of non-basic edges in train (WordNet: 0/10/25/50/90)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["rsgd", "radam", "adam", "sgd", "row-adam", "row-rsgd"])
    p.add_argument("--init", choices=["random", "poincare"])
    p.add_argument("--parametrization", choices=["ball", "exp0"])
    p.add_argument("--per-level", action="store_true", help="pick-per-level negative sampling")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--K", type=float, help="cone aperture constant")
    p.add_argument("--margin", type=float)
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other ModelConfig / TrainConfig / EvalConfig field (JSON values), e.g. --set init_epochs=20 "
                        "--set init_optimizer=row-rsgd --set threshold=midpoint")
    p.add_argument("--out", required=True, help="output directory (checkpoints: an interrupted run resumes here)")
    p.add_argument("--no-progress", action="store_true")
    _add_data_dir(p)
    p.set_defaults(func=cmd_embed)

    from .hmc_cli import add_hmc_parser
    from .reporting.plots import add_plot_parser
    from .reproduce_cli import add_reproduce_parsers

    add_plot_parser(sub)
    add_reproduce_parsers(sub)
    add_hmc_parser(sub)
    from .cnn_cli import add_cnn_parser

    add_cnn_parser(sub)
    from .joint_cli import add_joint_parser

    add_joint_parser(sub)
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
