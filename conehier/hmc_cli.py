"""``conehier hmc``: train and evaluate an HMC classifier on a benchmark, write ``results.json``.

Wire it into a parser with :func:`add_hmc_parser`::

    sub = parser.add_subparsers(dest="command")
    add_hmc_parser(sub)        # sets func=cmd_hmc on the "hmc" subcommand

``results.json`` holds ``metrics`` (means over seeds of ``auprc``, ``auprc_macro``,
``macro_f1``, ``rare_recall``, ... each with ``<name>_std``), ``config``,
``seeds``, ``epochs``, ``seconds_per_epoch``, ``samples_per_second``,
``wall_seconds`` and ``per_seed`` (every run's metrics and history).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .training.hmc import HMC_LOSSES, HMC_MODELS

__all__ = ["add_hmc_parser", "cmd_hmc", "config_from_args"]


def _epochs(value: str):
    v = value.strip().lower()
    if v in ("published", "early-stop"):
        return v
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--epochs takes a number, 'published' or 'early-stop', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--epochs must be >= 1, got {n}")
    return n


def _loss_option(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--loss-option takes KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def add_hmc_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``hmc`` subcommand on an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "hmc",
        help="train and evaluate a hierarchical multi-label classifier on an HMC benchmark",
        description="Train and evaluate an HMC classifier (MLP + head) on an HMC data set; writes OUT/results.json. "
                    "Hidden width and learning rate default to C-HMCNN's settings for the data set.",
    )
    p.add_argument("--dataset", required=True, help="HMC data set, e.g. cellcycle_FUN, pheno_GO, Diatoms (hmc: prefix allowed)")
    p.add_argument("--model", default="mcm-mlp", choices=HMC_MODELS,
                   help="head on the MLP: mlp (sigmoids), mcm-mlp (C-HMCNN max-constraint), softmax heads (default mcm-mlp)")
    p.add_argument("--loss", default=None, choices=HMC_LOSSES,
                   help="default: bce for mlp / mcm-mlp, nll for the softmax heads")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (runs), seeds SEED .. SEED+N-1 (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--epochs", type=_epochs, default="early-stop",
                   help="N (fixed), 'published' (C-HMCNN's count, on train+valid) or 'early-stop' "
                        "(on valid AU(PRC), then retrain on train+valid; default)")
    p.add_argument("--max-epochs", type=int, help="early stopping: most epochs (default 200)")
    p.add_argument("--patience", type=int, help="early stopping: evaluations without improvement (default 20)")
    p.add_argument("--no-retrain", action="store_true", help="final model trained on train only (not train+valid)")
    p.add_argument("--hidden", type=int, help="hidden width (default: C-HMCNN's for the data set, else 500)")
    p.add_argument("--layers", type=int, help="layers incl. the output layer, C-HMCNN's num_layers (default 3)")
    p.add_argument("--dropout", type=float, help="default 0.7")
    p.add_argument("--lr", type=float, help="default: C-HMCNN's for the data set, else 1e-4")
    p.add_argument("--weight-decay", type=float, help="default 1e-5")
    p.add_argument("--batch-size", type=int, help="default 4")
    p.add_argument("--heads", type=int, help="output layers on the backbone (default: 2 for rare-node, else 1)")
    p.add_argument("--threshold", default=None,
                   help="pcdb (per-node, tuned on valid; default), ofadb (one, tuned on valid) or a number")
    p.add_argument("--class-weight", choices=["inverse", "sqrt"], help="re-weight positive terms by inverse frequency")
    p.add_argument("--sampling", choices=["inverse", "sqrt"], help="re-sample training samples by inverse frequency")
    p.add_argument("--loss-option", type=_loss_option, action="append", default=[], metavar="KEY=VALUE",
                   help="extra loss argument, e.g. beta=2 (values parsed as JSON when possible); repeatable")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for small batches)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 ...")
    p.add_argument("--out", required=True, help="output directory for results.json")
    p.add_argument("--data-dir", default=None, help="data root (default: $CONEHIER_DATA, else the download cache)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_hmc)
    return p


def config_from_args(args):
    """The :class:`~conehier.training.hmc.HMCConfig` an ``hmc`` namespace asks for."""
    from .training.hmc import chmcnn_config

    epochs = args.epochs
    overrides = {
        "model": args.model,
        "loss": args.loss or ("bce" if args.model in ("mlp", "mcm-mlp") else "nll"),
        "hidden": args.hidden,
        "layers": args.layers,
        "dropout": args.dropout,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "batch_size": args.batch_size,
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "n_heads": args.heads,
        "threshold": args.threshold,
        "class_weight": args.class_weight,
        "sampling": args.sampling,
        "loss_options": dict(args.loss_option) or None,
        "threads": args.threads,
        "device": args.device,
        "seed": args.seed,
    }
    if args.no_retrain:
        overrides["retrain"] = False
    if isinstance(epochs, int):
        overrides["epochs"] = epochs
    cfg = chmcnn_config(args.dataset, published_epochs=epochs == "published", **overrides)
    if args.no_retrain and cfg.retrain:  # 'published' sets retrain; an explicit flag wins
        cfg = dataclasses.replace(cfg, retrain=False)
    return cfg


def cmd_hmc(args) -> int:
    from .data.hmc import load_hmc
    from .training.hmc import run_hmc

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    cfg = config_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_hmc(args.dataset, args.data_dir)
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    summary = run_hmc(ds, cfg, seeds=range(args.seed, args.seed + args.seeds), log=log)
    path = out / "results.json"
    path.write_text(json.dumps(summary, indent=2))
    m = summary["metrics"]
    print(f"{ds.name}: {cfg.model} + {cfg.loss}, {args.seeds} seed(s), final model on {summary['final_train']}, "
          f"epochs {summary['epochs']}")
    print(f"  AU(PRC) {m['auprc']:.4f} ± {m['auprc_std']:.4f}   macro AP {m['auprc_macro']:.4f}   "
          f"macro F1 {m['macro_f1']:.4f}   rare recall {m['rare_recall']:.4f}   (thresholds: {summary['threshold_source']})")
    print(f"  {summary['seconds_per_epoch']:.2f} s/epoch ({summary['samples_per_second']:.0f} samples/s), "
          f"{summary['wall_seconds']:.1f} s in all; results in {path}")
    return 0
