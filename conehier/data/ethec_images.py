"""ETHEC images: the split JSON files plus an image folder, as a torch ``Dataset``.

Layout (the ETHEC download)::

    DIR/train.json, val.json, test.json      split files (token -> specimen record)
    IMAGE_ROOT/<image_path>/<image_name>     one JPEG per specimen

``IMAGE_ROOT`` is ``image_dir`` when given, else the first of ``DIR``,
``DIR/IMAGO_build_test_resized`` (the name in the ETHEC archive) and
``DIR/images`` that holds one of the first 20 specimens' images. The records are parsed
by :mod:`conehier.data.ethec` (levels family, subfamily, genus,
genus_specific-epithet); the label hierarchy is built from the label paths of
all loaded splits, so every split shares its ids.

``ETHECImages[i]`` is ``(image, key, label_path)``: the transformed image
(a ``(3, crop, crop)`` float tensor with :func:`~conehier.models.backbones.image_transforms`),
the specimen token and its four label names. A missing or unreadable image
raises :class:`ImageLoadError` naming the file (and the constructor checks
up front that every file exists, listing the missing ones): nothing is skipped.

``labels`` is ``(N, 4)`` node ids; :meth:`ETHECImages.label_matrix` the
``(N, C)`` multi-hot matrix (closed under ancestors: the path is the closure).
:meth:`ETHECImages.class_weights` / :meth:`ETHECImages.sampler` give the
inverse-frequency class weights and the re-sampler of the thesis (section 4.4),
computed by :func:`conehier.models.heads.inverse_frequency_weights` /
:func:`~conehier.models.heads.make_sampler`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..hierarchy.graph import Hierarchy
from .ethec import LEVELS, SPLITS, load_ethec

__all__ = ["ETHECImages", "ImageLoadError", "collate_images", "find_image_root", "load_ethec_images", "read_image",
           "write_synthetic_ethec"]

_ROOT_CANDIDATES = (".", "IMAGO_build_test_resized", "images")


class ImageLoadError(ValueError):
    """An image file is missing or cannot be decoded (the message names the file)."""


def read_image(path: str | os.PathLike, what: str = ""):
    """Open ``path`` as an RGB PIL image; :class:`ImageLoadError` naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageLoadError(f"image file {path} does not exist{what}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageLoadError(f"cannot read image {path}{what}: {exc}") from None


def find_image_root(ethec_dir: str | os.PathLike, image_files: Sequence[str], image_dir=None) -> Path:
    """The folder the records' ``image_path/image_name`` are relative to (module docs)."""
    if image_dir is not None:
        root = Path(image_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"ETHEC image directory {root} does not exist")
        return root
    d = Path(ethec_dir)
    cands = [d / c for c in _ROOT_CANDIDATES]
    if not image_files:
        return d
    probe = list(image_files[:20])  # the first file may be the one that is missing
    for c in cands:
        if any((c / f).is_file() for f in probe):
            return c
    raise FileNotFoundError(
        f"cannot find the ETHEC images: {image_files[0]!r} is in none of {', '.join(str(c) for c in cands)}; "
        f"pass image_dir (CLI --image-dir) with the folder holding <image_path>/<image_name>")


class ETHECImages(Dataset):
    """One ETHEC split as ``(image, key, label_path)`` items (module docs).

    ``keys`` (N) specimen tokens, ``label_paths`` (N) tuples of 4 names,
    ``labels`` ``(N, 4)`` int64 node ids in ``hierarchy``, ``files`` (N) absolute
    image paths. ``transform``: PIL image -> tensor (default: the evaluation
    transform of :func:`~conehier.models.backbones.image_transforms`).
    """

    def __init__(self, keys: Sequence[str], label_paths: Sequence[Sequence[str]], files: Sequence[str | os.PathLike],
                 hierarchy: Hierarchy, *, transform: Callable | None = None, split: str = "", check: bool = True):
        if not (len(keys) == len(label_paths) == len(files)):
            raise ValueError(f"keys ({len(keys)}), label_paths ({len(label_paths)}) and files ({len(files)}) "
                             "must have the same length")
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate image keys in ETHEC split {split!r}")
        self.keys = list(keys)
        self.label_paths = [tuple(p) for p in label_paths]
        self.files = [str(f) for f in files]
        self.hierarchy = hierarchy
        self.split = split
        lp = np.asarray(self.label_paths, dtype=object).reshape(-1, len(LEVELS))
        self.labels = hierarchy.encode(lp.ravel()).reshape(lp.shape).astype(np.int64)
        if transform is None:
            from ..models.backbones import image_transforms

            transform = image_transforms(False)
        self.transform = transform
        if check:
            self.check_files()

    def __len__(self) -> int:
        return len(self.keys)

    def check_files(self) -> None:
        """Raise :class:`ImageLoadError` listing the image files that do not exist."""
        missing = [f for f in self.files if not os.path.isfile(f)]
        if missing:
            head = ", ".join(missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ImageLoadError(f"{len(missing)} of {len(self.files)} images of ETHEC split {self.split!r} "
                                 f"are missing: {head}{more}")

    def __getitem__(self, i: int):
        what = f" (specimen {self.keys[i]!r}, split {self.split!r})"
        img = read_image(self.files[i], what)
        return self.transform(img), self.keys[i], self.label_paths[i]

    def label_matrix(self) -> np.ndarray:
        """``(N, C)`` uint8 multi-hot labels (the four nodes of each path)."""
        y = np.zeros((len(self), self.hierarchy.n), dtype=np.uint8)
        np.put_along_axis(y, self.labels, 1, axis=1)
        return y

    def class_weights(self, power: float = 1.0) -> np.ndarray:
        """``(C,)`` inverse-frequency class weights ``(N / n_j)^power``, mean 1 over seen classes."""
        from ..models.heads import inverse_frequency_weights

        return inverse_frequency_weights(self.label_matrix(), power=power)

    def sampler(self, power: float = 1.0, *, generator: torch.Generator | None = None):
        """A ``WeightedRandomSampler`` drawing samples by the inverse frequency of their rarest label."""
        from ..models.heads import make_sampler

        return make_sampler(self.label_matrix(), power=power, generator=generator)


def load_ethec_images(ethec_dir: str | os.PathLike, *, image_dir=None, splits: Sequence[str] = SPLITS,
                      transforms: dict | Callable | None = None, resize: int = 448, crop: int = 224,
                      check: bool = True) -> dict[str, ETHECImages]:
    """``{split: ETHECImages}`` for the ETHEC split files in ``ethec_dir`` (all must exist).

    ``transforms``: one callable for every split, a ``{split: callable}`` dict, or
    ``None``: :func:`~conehier.models.backbones.image_transforms` with
    augmentation for ``train`` and without for the others (``resize``, ``crop``).
    """
    from ..models.backbones import image_transforms

    d = Path(ethec_dir)
    missing = [s for s in splits if not (d / f"{s}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"ETHEC split file(s) {', '.join(f'{s}.json' for s in missing)} not found in {d}")
    data = load_ethec(d, splits=tuple(splits), download=False)
    first = next(iter(data.splits.values()))
    root = find_image_root(d, first.image_files, image_dir)
    out = {}
    for s, sp in data.splits.items():
        if isinstance(transforms, dict):
            tf = transforms.get(s) or image_transforms(s == "train", resize=resize, crop=crop)
        elif transforms is not None:
            tf = transforms
        else:
            tf = image_transforms(s == "train", resize=resize, crop=crop)
        out[s] = ETHECImages(sp.tokens, [tuple(r) for r in sp.label_paths], [root / f for f in sp.image_files],
                             data.hierarchy, transform=tf, split=s, check=check)
    return out


def collate_images(batch):
    """DataLoader ``collate_fn`` for ``(image, key, label_path)`` items -> ``(B, 3, H, W)``, keys, paths."""
    imgs, keys, paths = zip(*batch)
    return torch.stack(imgs), list(keys), [tuple(p) for p in paths]


def write_synthetic_ethec(directory: str | os.PathLike, *, tree=None, per_leaf=(4, 2, 2), size: int = 32,
                          seed: int = 0, image_subdir: str = ".") -> Path:
    """Write a tiny data set in the ETHEC layout (split JSONs + JPEGs) for tests and demos.

    ``tree``: ``[(family, subfamily, genus, specific_epithet), ...]`` leaf paths
    (default: 2 families, 3 subfamilies, 4 genera, 6 species); ``per_leaf``:
    images per species in train, val, test. Each species gets its own colour
    plus noise (learnable from pixels), ``size x size`` RGB JPEGs under
    ``directory/image_subdir/<image_path>/``. Returns ``directory``.
    """
    import json

    from PIL import Image

    tree = tree or [("Fam_a", "Sub_a1", "Gen_a", "alpha"), ("Fam_a", "Sub_a1", "Gen_a", "beta"),
                    ("Fam_a", "Sub_a2", "Gen_b", "gamma"), ("Fam_b", "Sub_b1", "Gen_c", "delta"),
                    ("Fam_b", "Sub_b1", "Gen_c", "eps"), ("Fam_b", "Sub_b1", "Gen_d", "zeta")]
    d = Path(directory)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(len(tree), 3))
    n = 0
    for split, count in zip(SPLITS, per_leaf):
        records = {}
        for leaf, (fam, sub, gen, ep) in enumerate(tree):
            for _ in range(count):
                token = f"tok{n:05d}"
                folder = f"batch_{n % 3}"
                name = f"IMG_{n:05d}.JPG"
                pix = np.clip(colours[leaf] + rng.normal(0, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
                path = d / image_subdir / folder / name
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pix).save(path, format="JPEG", quality=90)
                records[token] = {"token": token, "image_path": folder, "image_name": name, "family": fam,
                                  "subfamily": sub, "genus": gen, "specific_epithet": ep}
                n += 1
        (d / f"{split}.json").write_text(json.dumps(records, indent=1))
    return d
