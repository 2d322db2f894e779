"""``conehier train-joint``: train a joint image-label embedding, evaluate it, write ``results.json``.

    conehier train-joint --data hmc:ImCLEF07A --geometry hyperbolic-cones --dim 10 --out runs/imclef-hc10
    conehier train-joint --data features:cache/ethec-resnet50 --geometry euclidean-cones --dim 100 --out runs/x
    conehier train-joint --data ethec:data/ethec --backbone resnet50 --geometry order --dim 2 --out runs/y

Data (``--data``):

* ``hmc:NAME`` -- the ARFF features and labels of an HMC benchmark
  (:func:`~conehier.data.hmc.load_hmc`); sets without a validation file hold out
  ``--valid-fraction`` of train (split seed 0, as :mod:`conehier.training.hmc`);
* ``features:DIR`` -- a feature cache (:class:`conehier.data.feature_cache.FeatureCache`:
  ``X``, ``label_paths``, ``splits`` with ``train`` / ``val`` (or ``valid``) / ``test``, ``hierarchy``);
* ``ethec:DIR`` -- ETHEC images: the feature cache is built first by
  :func:`conehier.data.feature_cache.ethec_feature_cache` with ``--backbone`` into
  ``--cache-dir`` (default ``OUT/features``; reused when it is there).

``OUT/results.json`` holds ``metrics`` (test: ``micro_f1``, ``micro_f1_level_<i>``,
``macro_f1``, ``hit@1/3/5``, ``auprc``, ``auprc_macro``), ``valid_metrics``,
``reconstruction`` (the label part of the graph), ``config``, ``data``,
``decision`` / ``thresholds``, ``best_epoch``, ``history`` and ``wall_seconds``.
The run checkpoints to ``OUT/checkpoints`` (an interrupted run resumes there) and
draws ``OUT/training_curves.png`` and, for ``--dim 2``, ``OUT/joint_embedding.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .jsonutil import to_jsonable

__all__ = ["add_joint_parser", "cmd_train_joint", "load_joint_data", "train_joint"]

GEOMETRY_CHOICES = ("order", "euclidean-cones", "euclidean-cones-cosine", "hyperbolic-cones")


def _split_rows(splits: dict) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    def get(*names):
        for n in names:
            if n in splits and splits[n] is not None:
                return np.asarray(splits[n], np.int64)
        return None

    tr, va, te = get("train"), get("val", "valid", "validation"), get("test")
    if tr is None or te is None:
        raise ValueError(f"the feature cache needs 'train' and 'test' splits, it has {sorted(splits)}")
    return tr, va, te


def _from_cache(cache, name: str, valid_fraction: float) -> dict:
    from .estimators import labels_to_matrix
    from .training.joint import default_eval_mask

    h = cache.hierarchy
    Y, h = labels_to_matrix(list(cache.label_paths), h)
    X = cache.X
    if len(Y) != X.shape[0]:
        raise ValueError(f"the feature cache has {X.shape[0]} feature rows but {len(Y)} label paths")
    tr, va, te = _split_rows(dict(cache.splits))
    if va is None:  # hold out part of train, seeded
        perm = np.random.default_rng(0).permutation(tr)
        n_val = max(1, int(round(valid_fraction * len(tr))))
        va, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    take = lambda rows: np.asarray(X[rows], np.float32)  # noqa: E731 (reads only these rows of a memmap)
    return {"name": name, "hierarchy": h, "eval_mask": default_eval_mask(h),
            "X_train": take(tr), "Y_train": Y[tr], "X_valid": take(va), "Y_valid": Y[va],
            "X_test": take(te), "Y_test": Y[te]}


def load_joint_data(spec: str, *, data_dir=None, valid_fraction: float = 0.2, backbone: str | None = None,
                    device: str | None = None, cache_dir=None, image_options: dict | None = None) -> dict:
    """Train / valid / test features and ``(N, C)`` labels for ``--data SPEC`` (module docs).

    ``cache_dir``: where ``ethec:`` writes (or reuses) its feature cache; ``image_options``:
    further keywords of :func:`~conehier.data.feature_cache.ethec_feature_cache` for ``ethec:``
    (``image_dir``, ``weights``, ``allow_random``, ``resize``, ``crop``, ``progress``).
    Returns ``name``, ``hierarchy``, ``eval_mask`` and ``X_*`` / ``Y_*`` for ``train``,
    ``valid``, ``test``.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"--data must be hmc:NAME, features:DIR or ethec:DIR, got {spec!r}")
    if kind == "hmc":
        from .data.hmc import load_hmc

        if backbone:
            raise ValueError("--backbone does not apply to hmc: data (its features are fixed)")
        ds = load_hmc(rest, data_dir)
        if ds.X_valid is None:
            ds = ds.split_validation(valid_fraction, seed=0)
        return {"name": ds.name, "hierarchy": ds.hierarchy, "eval_mask": ds.eval_mask,
                "X_train": ds.X_train, "Y_train": ds.Y_train, "X_valid": ds.X_valid, "Y_valid": ds.Y_valid,
                "X_test": ds.X_test, "Y_test": ds.Y_test, "valid_source": ds.valid_source}
    if kind == "features":
        from .data.feature_cache import FeatureCache

        d = Path(rest)
        if not d.is_dir():
            raise FileNotFoundError(f"no feature cache directory {d}")
        return _from_cache(FeatureCache.load(d), d.name, valid_fraction)
    if kind == "ethec":
        from .data.feature_cache import ethec_feature_cache

        d = Path(rest)
        if not d.exists():
            raise FileNotFoundError(f"no ETHEC directory {d}")
        if cache_dir is None:
            raise ValueError("ethec: data needs a directory for its feature cache (cache_dir)")
        kwargs = {k: v for k, v in (("backbone", backbone), ("device", device)) if v is not None}
        cache = ethec_feature_cache(d, cache_dir, **kwargs, **(image_options or {}))
        return _from_cache(cache, f"ethec-{backbone or 'default'}", valid_fraction)
    raise ValueError(f"unknown data kind {kind!r}: use hmc:NAME, features:DIR or ethec:DIR")


def train_joint(data: dict, config, *, out: str | Path | None = None, progress: bool = False, log=None,
                plots: bool = True) -> dict:
    """Train ``config`` (a :class:`~conehier.training.joint.JointConfig`) on ``data``
    (:func:`load_joint_data`), evaluate on its test split; with ``out`` checkpoint there,
    write ``results.json`` and the plots. Returns the results dict."""
    from .training.joint import fit_joint

    t0 = time.perf_counter()
    ckpt = Path(out) / "checkpoints" if out else None
    res = fit_joint(data["X_train"], data["Y_train"], data["hierarchy"], config, X_valid=data["X_valid"],
                    Y_valid=data["Y_valid"], eval_mask=data["eval_mask"], checkpoint_dir=ckpt, progress=progress,
                    log=log)
    metrics = res.evaluate(data["X_test"], data["Y_test"])
    rec = res.reconstruction() if config.reconstruction else None
    n_eval = max(1, sum(1 for h in res.history if "valid_f1" in h))
    results = {
        "data": {"spec": data.get("spec"), "name": data["name"], "n_train": len(data["X_train"]),
                 "n_valid": len(data["X_valid"]), "n_test": len(data["X_test"]),
                 "n_features": int(np.asarray(data["X_train"]).shape[1]), "n_labels": data["hierarchy"].n,
                 "valid_source": data.get("valid_source"), "backbone": data.get("backbone")},
        "config": config.to_dict(),
        "metrics": metrics,
        "valid_metrics": res.valid_metrics,
        "reconstruction": rec,
        "decision": res.decision,
        "thresholds": res.thresholds,
        "best_epoch": res.best_epoch,
        "epochs": res.epochs_trained,
        "train_seconds": res.train_seconds,
        "seconds_per_epoch": sum(h["seconds"] for h in res.history) / max(1, len(res.history)),
        "evaluations": n_eval,
        "label_init": res.label_init,
        "device": str(res.model.device),
        "history": res.history,
        "wall_seconds": time.perf_counter() - t0,
    }
    results = to_jsonable(results)
    if out:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        if plots:
            results["plots"] = _plots(res, data, d)
        (d / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _plots(res, data: dict, d: Path) -> list[str]:
    from .reporting.plots import plot_joint_embedding, plot_training_curves

    made = []
    fig = plot_training_curves(res.history, title=f"joint {res.config.geometry}, d={res.config.dim}, {data['name']}")
    for ax in fig.axes[1:2]:
        ax.set_ylabel("validation micro-F1")
    fig.savefig(d / "training_curves.png", dpi=150, bbox_inches="tight")
    made.append("training_curves.png")
    if res.config.dim == 2:
        import torch

        h = res.hierarchy
        X = np.asarray(data["X_test"], np.float32)
        Y = np.asarray(data["Y_test"], bool)
        with torch.no_grad():
            res.model.eval()
            img = res.model.image_points(torch.as_tensor(X, device=res.model.device)).cpu().numpy()
            lab = res.model.label_points().cpu().numpy()
        deepest = np.where(Y, h.depth[None, :], -1).argmax(1)  # each image's most specific label
        geometry = {"hyperbolic-cones": "poincare", "order": "order"}.get(res.config.geometry, "euclidean")
        plot_joint_embedding(lab, img, deepest, h, geometry=geometry, save=d / "joint_embedding.png",
                             title=f"joint {res.config.geometry}, {data['name']} (test images)")
        made.append("joint_embedding.png")
    return made


def add_joint_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train-joint`` on an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "train-joint",
        help="train a joint image-label embedding classifier (order embeddings / entailment cones)",
        description="Embed labels and images (a learned map of their features) jointly; classify by the lowest "
                    "energy per level. Writes OUT/results.json, a checkpoint and plots.",
    )
    p.add_argument("--data", required=True, help="hmc:NAME | features:DIR (a feature cache) | ethec:DIR (images)")
    p.add_argument("--geometry", required=True, choices=GEOMETRY_CHOICES)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--backbone", default=None, help="CNN for ethec: (feature extraction), e.g. resnet50")
    p.add_argument("--out", required=True, help="output directory (checkpoints: an interrupted run resumes here)")
    p.add_argument("--cache-dir", default=None, help="ethec: where the feature cache goes (default OUT/features)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--optimizer", choices=["adam", "radam", "rsgd"], default="adam")
    p.add_argument("--lr-labels", type=float, help="label-table learning rate (default: per geometry)")
    p.add_argument("--lr-W", dest="lr_W", type=float, help="image-map learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--margin", type=float, help="max-margin loss margin (default: per geometry)")
    p.add_argument("--K", type=float, default=0.1, help="cone aperture constant")
    p.add_argument("--hidden", type=int, default=0, help="hidden width of the image map (0: linear W, the thesis's)")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--negatives", type=int, default=5, help="corrupted parents and children per positive (5 + 5)")
    p.add_argument("--no-per-level", action="store_true", help="uniform instead of pick-per-level negatives")
    p.add_argument("--label-init", choices=["random", "embed"], default="random",
                   help="'embed': start the labels from a label-only run of the same geometry")
    p.add_argument("--label-init-epochs", type=int, default=200)
    p.add_argument("--decision", choices=["auto", "level-argmax", "threshold"], default="auto")
    p.add_argument("--threshold", choices=["ofadb", "pcdb"], default="ofadb", help="thresholds of decision 'threshold'")
    p.add_argument("--valid-fraction", type=float, default=0.2, help="held out of train when there is no valid split")
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--patience", type=int, default=None, help="stop after N evaluations without improvement")
    p.add_argument("--no-reconstruction", action="store_true", help="skip graph reconstruction of the labels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--data-dir", default=None, help="data root for hmc: (default: $CONEHIER_DATA, else the cache)")
    p.add_argument("--image-dir", help="ethec: folder holding <image_path>/<image_name> (default: found under DIR)")
    p.add_argument("--weights", default="imagenet", help="ethec: backbone weights (default: ImageNet, from the cache)")
    p.add_argument("--random-init", action="store_true", help="ethec: random backbone weights (no ImageNet weights)")
    p.add_argument("--resize", type=int, default=448, help="ethec: centre-crop size before resizing (default 448)")
    p.add_argument("--crop", type=int, default=224, help="ethec: network input size (default 224)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train_joint)
    return p


def config_from_args(args):
    """The :class:`~conehier.training.joint.JointConfig` a ``train-joint`` namespace asks for."""
    from .training.joint import JointConfig

    return JointConfig(
        geometry=args.geometry, dim=args.dim, K=args.K, margin=args.margin, hidden=args.hidden,
        dropout=args.dropout, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
        lr_labels=args.lr_labels, lr_W=args.lr_W, weight_decay=args.weight_decay, k_parent=args.negatives,
        k_child=args.negatives, per_level=not args.no_per_level, label_init=args.label_init,
        label_init_epochs=args.label_init_epochs, eval_every=args.eval_every, patience=args.patience,
        decision=args.decision, threshold=args.threshold, reconstruction=not args.no_reconstruction,
        seed=args.seed, device=args.device, dtype=args.dtype, threads=args.threads,
    )


def cmd_train_joint(args) -> int:
    cfg = config_from_args(args)  # bad options fail before any data is read
    if args.dim < 1:
        raise ValueError(f"--dim must be >= 1, got {args.dim}")
    data = load_joint_data(args.data, data_dir=args.data_dir, valid_fraction=args.valid_fraction,
                           backbone=args.backbone, device=args.device,
                           cache_dir=args.cache_dir or str(Path(args.out) / "features"),
                           image_options={"image_dir": args.image_dir, "resize": args.resize, "crop": args.crop,
                                          "weights": None if args.random_init else args.weights,
                                          "allow_random": args.random_init, "progress": not args.quiet})
    data["spec"], data["backbone"] = args.data, args.backbone
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    r = train_joint(data, cfg, out=args.out, progress=False, log=log, plots=not args.no_plots)
    m = r["metrics"]
    levels = " / ".join(f"{m[k]:.4f}" for k in sorted(k for k in m if k.startswith("micro_f1_level_")))
    print(f"{cfg.geometry}, d={cfg.dim} on {data['name']}: best epoch {r['best_epoch']}/{r['epochs']}, "
          f"decision {r['decision']}")
    print(f"  test micro-F1 {m['micro_f1']:.4f} (per level {levels})  hit@3 {m['hit@3']:.4f}  hit@5 {m['hit@5']:.4f}"
          f"  AU(PRC) {m['auprc']:.4f}")
    if r.get("reconstruction"):
        rc = r["reconstruction"]
        print(f"  label reconstruction: F1 {rc['f1']:.4f}  TPR {rc['tpr']:.4f}  TNR {rc['tnr']:.4f}")
    print(f"  {r['seconds_per_epoch']:.2f} s/epoch, {r['wall_seconds']:.1f} s in all; results in {args.out}/results.json")
    return 0
