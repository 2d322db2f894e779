"""``conehier train-cnn`` (HMC heads on images or features) and ``conehier extract-features`` (feature cache).

Wire both into a parser with :func:`add_cnn_parser`::

    sub = parser.add_subparsers(dest="command")
    add_cnn_parser(sub)

``train-cnn --data SPEC --head HEAD --out DIR`` trains one row of thesis Table
4.16 / 6.4 (:mod:`conehier.training.cnn`) and writes ``DIR/results.json``
(``metrics``: test ``micro_f1``, ``micro_f1_level_<i>``, ``hit@3``, ``hit@5``,
``auprc``, ...; ``config``; ``wall_seconds``; ``history``), ``DIR/checkpoint.pt``
(resumed when the command is run again), ``DIR/best.pt`` and
``DIR/training_curves.png`` (unless ``--no-plot``). Under ``torchrun --nproc_per_node N`` the same
command trains with DistributedDataParallel (``--batch-size`` is the global batch).
"""

from __future__ import annotations

import argparse
import sys

from .models.backbones import BACKBONES
from .training.cnn import CNN_HEADS

__all__ = ["add_cnn_parser", "cmd_train_cnn", "cmd_extract_features", "config_from_args"]


def _weights(args):
    if args.random_init:
        return None, True
    w = args.weights
    return (None if w.lower() in ("none", "random") else w), False


def add_cnn_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train-cnn`` and ``extract-features``; returns the ``train-cnn`` parser."""
    p = subparsers.add_parser(
        "train-cnn", help="train a hierarchical classifier head on images (CNN) or features",
        description="Train an HMC head on a CNN backbone (ethec:DIR images) or on a linear layer / MLP "
                    "(features:DIR feature cache, hmc:NAME benchmark); writes OUT/results.json, a resumable "
                    "checkpoint and OUT/training_curves.png. Defaults follow the thesis: SGD, lr 0.01, batch 64, "
                    "100 epochs, 448 -> 224 images. Run under 'torchrun --nproc_per_node N' for several GPUs.")
    p.add_argument("--data", required=True, metavar="SPEC", help="hmc:NAME | features:DIR | ethec:DIR")
    p.add_argument("--head", required=True, choices=list(CNN_HEADS))
    p.add_argument("--backbone", choices=BACKBONES, help="CNN for ethec: images (default resnet50)")
    p.add_argument("--out", required=True, help="output directory (an interrupted run resumes from it)")
    p.add_argument("--image-dir", help="ethec: folder holding <image_path>/<image_name> (default: found under DIR)")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (torchvision IMAGENET1K_V1, from the torch hub cache), another torchvision "
                        "weights name, a .pth state_dict, or none (random)")
    p.add_argument("--random-init", action="store_true", help="random initialisation instead of pretrained weights")
    p.add_argument("--finetune", choices=["all", "last"], default="all",
                   help="update all weights (default) or only the last layer (the head)")
    p.add_argument("--hidden", type=int, default=0, help="features: MLP width (default 0: a linear layer)")
    p.add_argument("--n-hidden", type=int, default=1, help="features: hidden layers of the MLP (default 1)")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=64, help="global batch size (default 64)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--class-weight", choices=["inverse", "sqrt"], help="inverse-frequency class weights in the loss")
    p.add_argument("--sampling", choices=["inverse", "sqrt"], help="re-sample training images by inverse frequency")
    p.add_argument("--threshold", default="pcdb", help="flat head: pcdb, ofadb (tuned on val) or a number")
    p.add_argument("--select", choices=["micro_f1", "auprc", "loss"],
                   help="validation metric choosing the epoch (default micro_f1; auprc for flat)")
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers for images (default 4)")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--resize", type=int, default=448, help="centre-crop size before resizing (default 448)")
    p.add_argument("--crop", type=int, default=224, help="network input size (default 224)")
    p.add_argument("--device", help="cpu, cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in OUT")
    p.add_argument("--data-dir", default=None, help="hmc: data root (default: $CONEHIER_DATA)")
    p.add_argument("--no-plot", action="store_true", help="no OUT/training_curves.png")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train_cnn)

    q = subparsers.add_parser(
        "extract-features", help="run a CNN once over the ETHEC images and cache its features",
        description="Feature cache (features.npy memory-mapped, labels.json, meta.json) of the ETHEC splits "
                    "for embedding training or 'train-cnn --data features:OUT'. Reuses rows already cached "
                    "for the same model.")
    q.add_argument("--ethec", required=True, metavar="DIR", help="folder with train.json, val.json, test.json")
    q.add_argument("--image-dir", help="folder holding <image_path>/<image_name> (default: found under DIR)")
    q.add_argument("--backbone", choices=BACKBONES, default="resnet18")
    q.add_argument("--out", required=True, help="cache directory")
    q.add_argument("--weights", default="imagenet")
    q.add_argument("--random-init", action="store_true")
    q.add_argument("--splits", default="train,val,test")
    q.add_argument("--resize", type=int, default=448)
    q.add_argument("--crop", type=int, default=224)
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--workers", type=int, default=4)
    q.add_argument("--device")
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--overwrite", action="store_true", help="replace a cache of another model in OUT")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_extract_features)
    return p


def config_from_args(args):
    """The :class:`~conehier.training.cnn.CNNConfig` a ``train-cnn`` namespace asks for."""
    from .training.cnn import CNNConfig

    kind = args.data.partition(":")[0]
    if args.backbone is not None and kind != "ethec":
        raise ValueError(f"--backbone applies to ethec: images; {args.data} trains on features "
                         "(use extract-features first to change the CNN)")
    weights, allow_random = _weights(args)
    return CNNConfig(
        head=args.head, backbone=args.backbone or "resnet50", weights=weights, allow_random=allow_random,
        finetune=args.finetune, hidden=args.hidden, n_hidden=args.n_hidden, dropout=args.dropout,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        batch_size=args.batch_size, epochs=args.epochs, class_weight=args.class_weight, sampling=args.sampling,
        threshold=args.threshold, select_metric=args.select, eval_every=args.eval_every,
        amp=not args.no_amp, num_workers=args.workers if kind == "ethec" else 0, seed=args.seed,
        device=args.device, threads=args.threads)


def cmd_train_cnn(args) -> int:
    from .training.cnn import load_cnn_data, train_cnn
    from .training.distributed import cleanup, init_distributed

    cfg = config_from_args(args)
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    info = init_distributed(cfg.device)
    try:
        data = load_cnn_data(args.data, data_dir=args.data_dir, image_dir=args.image_dir, resize=args.resize,
                             crop=args.crop)
        log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        result = train_cnn(data, cfg, out=args.out, resume=not args.no_resume, log=log, dist_info=info,
                           plot=not args.no_plot)
    finally:
        cleanup(info)
    if result is None:
        return 0
    m = result.metrics
    levels = " ".join(f"L{k.rsplit('_', 1)[1]} {v:.4f}" for k, v in m.items() if k.startswith("micro_f1_level_"))
    print(f"{cfg.head} on {result.data} ({cfg.backbone if data.kind == 'images' else 'features'}), "
          f"{result.epochs_trained} epochs on {result.device} x{result.world_size}, best epoch {result.best_epoch}")
    print(f"  test micro-F1 {m['micro_f1']:.4f} ({levels})  hit@3 {m['hit@3']:.4f}  hit@5 {m['hit@5']:.4f}  "
          f"AU(PRC) {m['auprc']:.4f}  (decisions: {result.threshold_source})")
    print(f"  {result.seconds_per_epoch:.2f} s/epoch ({result.samples_per_second:.0f} samples/s), "
          f"{result.wall_seconds:.1f} s in all; results in {args.out}/results.json")
    return 0


def cmd_extract_features(args) -> int:
    import torch

    from .data.feature_cache import ethec_feature_cache

    torch.set_num_threads(args.threads)
    weights, allow_random = _weights(args)
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    cache = ethec_feature_cache(args.ethec, args.out, backbone=args.backbone, image_dir=args.image_dir,
                                weights=weights, allow_random=allow_random, splits=splits, resize=args.resize,
                                crop=args.crop, batch_size=args.batch_size, num_workers=args.workers,
                                device=args.device, progress=not args.quiet, seed=args.seed, overwrite=args.overwrite)
    meta = cache.meta
    print(f"{len(cache)} images x {cache.dim} features of {meta['backbone']} ({meta['weights']}) in {args.out}: "
          f"{meta['computed']} computed, {meta['reused']} reused, {meta['seconds']:.1f} s")
    return 0
