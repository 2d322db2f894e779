"""Feature cache: a backbone's penultimate-layer features of a data set, on disk, memory-mapped.

A cache directory holds::

    features.npy   (N, D) float32, read with np.load(mmap_mode="r")
    labels.json    {"keys": [N image ids], "label_paths": [N root->leaf name lists],
                    "splits": {split: [row indices]}}
    meta.json      {"backbone", "weights", "dim", "transform", "n", "created", "seconds", ...}

:func:`extract_features` runs a backbone once over a data set (eval mode, no
gradients, mixed precision on CUDA) and writes the cache; the rows are keyed by
model and image: when ``out_dir`` already holds features of the same backbone,
weights and transform, the rows of known keys are reused and only new images
are run through the CNN (a cache of another model raises unless
``overwrite=True``). :func:`ethec_feature_cache` does this for the ETHEC
splits; :class:`FeatureCache` reads a cache back (``FeatureCache.load``) for
embedding training or ``conehier train-cnn --data features:DIR``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..hierarchy.graph import Hierarchy

__all__ = ["FeatureCache", "extract_features", "ethec_feature_cache", "FEATURES", "META", "LABELS"]

FEATURES, META, LABELS = "features.npy", "meta.json", "labels.json"


@dataclass(eq=False)
class FeatureCache:
    """A loaded feature cache (module docs). ``X`` is memory-mapped, read-only."""

    X: np.ndarray
    keys: list[str]
    label_paths: list[tuple[str, ...]]
    splits: dict[str, np.ndarray]
    meta: dict
    directory: Path | None = None
    _index: dict = field(default=None, repr=False)

    def __post_init__(self):
        if self.X.ndim != 2 or self.X.shape[0] != len(self.keys) or len(self.keys) != len(self.label_paths):
            raise ValueError(f"feature cache is inconsistent: X {self.X.shape}, {len(self.keys)} keys, "
                             f"{len(self.label_paths)} label paths")
        for s, rows in self.splits.items():
            if rows.size and (rows.min() < 0 or rows.max() >= len(self.keys)):
                raise ValueError(f"feature cache split {s!r} has row indices outside [0, {len(self.keys)})")

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    @cached_property
    def hierarchy(self) -> Hierarchy:
        """``Hierarchy.from_label_paths(label_paths)`` (ids level-major, in order of first appearance)."""
        return Hierarchy.from_label_paths(self.label_paths, name=self.meta.get("dataset"))

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        """``(len(keys),)`` int64 row indices of image ``keys``; ``KeyError`` naming an unknown one."""
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.keys)}
        try:
            return np.fromiter((self._index[k] for k in keys), dtype=np.int64, count=len(keys))
        except KeyError as exc:
            raise KeyError(f"image {exc.args[0]!r} is not in the feature cache {self.directory}") from None

    def label_matrix(self, hierarchy: Hierarchy | None = None) -> np.ndarray:
        """``(N, C)`` uint8 multi-hot labels of every row (the nodes of its label path)."""
        h = hierarchy or self.hierarchy
        y = np.zeros((len(self), h.n), dtype=np.uint8)
        flat = [(i, lab) for i, p in enumerate(self.label_paths) for lab in p if lab]
        if flat:
            r, labs = zip(*flat)
            y[np.asarray(r), h.encode(labs)] = 1
        return y

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "FeatureCache":
        """Read a cache directory (``features.npy`` memory-mapped)."""
        d = Path(directory)
        missing = [f for f in (FEATURES, META, LABELS) if not (d / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{d} is not a feature cache: missing {', '.join(missing)}")
        X = np.load(d / FEATURES, mmap_mode="r")
        meta = json.loads((d / META).read_text())
        lab = json.loads((d / LABELS).read_text())
        splits = {k: np.asarray(v, dtype=np.int64) for k, v in lab.get("splits", {}).items()}
        return cls(X=X, keys=list(lab["keys"]), label_paths=[tuple(p) for p in lab["label_paths"]],
                   splits=splits, meta=meta, directory=d)


def _fingerprint(meta: dict) -> tuple:
    return meta.get("backbone"), meta.get("weights"), json.dumps(meta.get("transform"), sort_keys=True)


def _describe_transform(ds) -> dict | None:
    t = getattr(ds, "transform", None)
    return None if t is None else {"repr": " ".join(repr(t).split())}


def _collate(batch):
    imgs, keys, paths = zip(*batch)
    return torch.stack(imgs), list(keys), [tuple(p) for p in paths]


class _Rows(torch.utils.data.Dataset):
    def __init__(self, ds, idx):
        self.ds, self.idx = ds, idx

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.ds[int(self.idx[i])]


def _as_splits(dataset) -> dict:
    if isinstance(dataset, Mapping):
        if not dataset:
            raise ValueError("no data sets to extract features from")
        return dict(dataset)
    return {"all": dataset}


def extract_features(backbone: str, dataset, out_dir: str | os.PathLike, *, weights: str | None = "imagenet",
                     allow_random: bool = False, batch_size: int = 64, num_workers: int = 0, device=None,
                     progress: bool = True, seed: int = 0, overwrite: bool = False, amp: bool = True,
                     meta: dict | None = None) -> FeatureCache:
    """Run ``backbone`` over ``dataset`` once and store the features in ``out_dir`` (module docs).

    ``dataset``: a ``Dataset`` of ``(image tensor (3, H, W), key, label_path)``
    items, or ``{split: dataset}`` (a plain data set is split ``"all"``). When a
    data set has ``keys`` and ``label_paths`` attributes (e.g.
    :class:`~conehier.data.ethec_images.ETHECImages`), only images missing from
    an existing cache of the same model are loaded. ``weights`` /
    ``allow_random``: :func:`~conehier.models.backbones.build_backbone`
    (random weights are drawn with ``torch.manual_seed(seed)``). ``device``:
    default CUDA when available, else CPU; ``amp``: float16 autocast on CUDA.
    Features are float32; a non-finite feature raises ``ValueError``.
    """
    from ..models.backbones import build_backbone

    t0 = time.perf_counter()
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parts = _as_splits(dataset)
    out = Path(out_dir)
    old = None
    if (out / META).is_file():
        old = FeatureCache.load(out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net, dim = build_backbone(backbone, weights=weights, allow_random=allow_random)
    label = net.weights if net.weights != "random" else f"random(seed={seed})"
    first = next(iter(parts.values()))
    new_meta = {"backbone": net.name, "weights": label, "dim": dim, "transform": _describe_transform(first)}
    if old is not None and _fingerprint(old.meta) != _fingerprint(new_meta):
        if not overwrite:
            raise ValueError(
                f"{out} holds features of {old.meta.get('backbone')} ({old.meta.get('weights')}, transform "
                f"{old.meta.get('transform')}), not of {net.name} ({label}): "
                "choose another directory or overwrite=True")
        old = None
    old_index = {k: i for i, k in enumerate(old.keys)} if old is not None else {}

    # keys and label paths known up front (cheap) or only after loading every image
    plan = []  # (split, dataset, keys or None, label paths or None, rows to compute)
    for s, ds in parts.items():
        ks = getattr(ds, "keys", None)
        lps = getattr(ds, "label_paths", None)
        if isinstance(ks, (list, tuple)) and lps is not None and len(ks) == len(ds):
            todo = np.array([i for i, k in enumerate(ks) if k not in old_index], dtype=np.int64)
            plan.append((s, ds, list(ks), [tuple(p) for p in lps], todo))
        else:
            plan.append((s, ds, None, None, np.arange(len(ds), dtype=np.int64)))
    n_todo = sum(len(p[4]) for p in plan)

    net = net.to(dev).eval()
    computed_keys, computed_paths, chunks = [], [], []
    done, last = 0, time.perf_counter()
    use_amp = amp and dev.type == "cuda"
    spans = {}
    with torch.inference_mode():
        for s, ds, ks, lps, todo in plan:
            spans[s] = (len(computed_keys), len(computed_keys) + len(todo))
            if len(todo) == 0:
                continue
            loader = torch.utils.data.DataLoader(_Rows(ds, todo), batch_size=batch_size, shuffle=False,
                                                 num_workers=num_workers, pin_memory=dev.type == "cuda",
                                                 collate_fn=_collate)
            for imgs, bkeys, bpaths in loader:
                with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                    f = net(imgs.to(dev, non_blocking=True))
                f = f.float().cpu().numpy()
                if not np.isfinite(f).all():
                    raise ValueError(f"non-finite features from {net.name} for image(s) of split {s!r}: "
                                     f"{[k for k, ok in zip(bkeys, np.isfinite(f).all(1)) if not ok][:5]}")
                chunks.append(f)
                computed_keys.extend(bkeys)
                computed_paths.extend(bpaths)
                done += len(bkeys)
                if progress and (time.perf_counter() - last > 10 or done == n_todo):
                    last = time.perf_counter()
                    rate = done / max(last - t0, 1e-9)
                    print(f"features {net.name}: {done}/{n_todo} images ({rate:.1f} images/s)", file=sys.stderr,
                          flush=True)
    new_rows = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    new_index: dict = {}
    for i, k in enumerate(computed_keys):  # a key in two splits is one image: its first row serves both
        new_index.setdefault(k, i)

    # assemble every split's rows: reused from the old cache or freshly computed
    keys, paths, splits, source = [], [], {}, []  # source: (+old row) or (-1 - new row)
    pos = {}
    for s, ds, ks, lps, todo in plan:
        if ks is None:
            a, b = spans[s]
            ks = computed_keys[a:b]
        rows = []
        if len(set(ks)) != len(ks):
            raise ValueError(f"duplicate image keys in split {s!r}")
        for k in ks:
            if k in pos:
                rows.append(pos[k])
                continue
            pos[k] = len(keys)
            rows.append(len(keys))
            keys.append(k)
            if k in new_index:
                paths.append(computed_paths[new_index[k]])
                source.append(-1 - new_index[k])
            else:
                paths.append(old.label_paths[old_index[k]])
                source.append(old_index[k])
        if lps is not None:
            for k, lp in zip(ks, lps):
                if paths[pos[k]] != tuple(lp):
                    raise ValueError(f"image {k!r} has label path {tuple(lp)} but {paths[pos[k]]} in the cache")
        splits[s] = np.asarray(rows, dtype=np.int64)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (FEATURES + ".tmp")
    X = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(keys), dim))
    src = np.asarray(source, dtype=np.int64)
    is_new = src < 0
    if is_new.any():
        X[np.flatnonzero(is_new)] = new_rows[-1 - src[is_new]]
    if (~is_new).any():
        X[np.flatnonzero(~is_new)] = old.X[src[~is_new]]
    X.flush()
    del X
    os.replace(tmp, out / FEATURES)
    meta_out = dict(meta or {})
    meta_out.update(new_meta)
    meta_out.update({"n": len(keys), "computed": int(len(computed_keys)), "reused": int((~is_new).sum()),
                     "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "seconds": time.perf_counter() - t0, "device": str(dev)})
    (out / LABELS).write_text(json.dumps({"keys": keys, "label_paths": [list(p) for p in paths],
                                          "splits": {k: v.tolist() for k, v in splits.items()}}))
    (out / META).write_text(json.dumps(meta_out, indent=2))
    return FeatureCache.load(out)


def ethec_feature_cache(ethec_dir, out_dir, *, backbone: str = "resnet18", image_dir=None,
                        weights: str | None = "imagenet", allow_random: bool = False,
                        splits: Sequence[str] = ("train", "val", "test"), resize: int = 448, crop: int = 224,
                        batch_size: int = 64, num_workers: int = 0, device=None, progress: bool = True,
                        seed: int = 0, overwrite: bool = False) -> FeatureCache:
    """Feature cache of the ETHEC ``splits`` (evaluation transform: centre crop ``resize``, resize to ``crop``)."""
    from ..models.backbones import image_transforms
    from .ethec_images import load_ethec_images

    tf = image_transforms(False, resize=resize, crop=crop)
    data = load_ethec_images(ethec_dir, image_dir=image_dir, splits=splits, transforms=tf)
    return extract_features(backbone, data, out_dir, weights=weights, allow_random=allow_random,
                            batch_size=batch_size, num_workers=num_workers, device=device, progress=progress,
                            seed=seed, overwrite=overwrite,
                            meta={"dataset": "ethec", "source": str(ethec_dir), "resize": resize, "crop": crop})
