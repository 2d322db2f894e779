"""ETHEC (ETH Entomological Collection) split files -> the ETHEC Merged hierarchy.

Each split JSON (``train.json``, ``val.json``, ``test.json`` in ``ROOT/ethec``)
maps a token to a specimen record with ``image_path``, ``image_name``,
``family``, ``subfamily``, ``genus``, ``specific_epithet`` ... The four levels
of ETHEC Merged (thesis section 4.1) are family, subfamily, genus and
``genus_specific-epithet`` (the species label joins the two with ``_``).
The hierarchy is the forest those label paths form (six family roots).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..hierarchy.errors import HierarchyError
from ..hierarchy.graph import Hierarchy
from .paths import data_root, require_files

LEVELS = ("family", "subfamily", "genus", "genus_specific_epithet")
SPLITS = ("train", "val", "test")
URL = "https://raw.githubusercontent.com/ankitdhall/learning_embeddings/master/splits/ETHEC/{}"


def _url(fname: str) -> str | None:
    return URL.format(fname) if fname in ("val.json", "test.json") else None  # train.json ships with the images


@dataclass(frozen=True)
class ETHECSplit:
    """Specimens of one split: ``label_paths`` (N, 4) names, ``labels`` (N, 4) ids, image paths."""

    tokens: list[str]
    label_paths: np.ndarray
    labels: np.ndarray
    image_files: list[str]

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class ETHECData:
    hierarchy: Hierarchy
    splits: dict[str, ETHECSplit]
    directory: Path
    missing_splits: tuple[str, ...] = field(default=())

    def samples_per_split(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


def label_path(record: dict, source: str = "") -> list[str]:
    """The four ETHEC Merged labels of one specimen record."""
    try:
        fam, sub, gen, ep = (str(record[k]).strip() for k in ("family", "subfamily", "genus", "specific_epithet"))
    except KeyError as exc:
        raise HierarchyError(f"ETHEC record {source} lacks the field {exc.args[0]!r}") from None
    for lvl, v in zip(LEVELS, (fam, sub, gen, ep)):
        if not v:
            raise HierarchyError(f"ETHEC record {source} has an empty {lvl}")
    return [fam, sub, gen, f"{gen}_{ep}"]


def _read_split(path: Path) -> tuple[list[str], list[list[str]], list[str]]:
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise HierarchyError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HierarchyError(f"{path}: expected a JSON object mapping tokens to specimen records")
    tokens, paths, files = [], [], []
    for tok, rec in data.items():
        paths.append(label_path(rec, f"{tok!r} in {path.name}"))
        tokens.append(tok)
        files.append(os.path.join(str(rec.get("image_path", "")), str(rec.get("image_name", ""))))
    return tokens, paths, files


def load_ethec(
    data_dir: str | os.PathLike | None = None,
    *,
    splits: tuple[str, ...] = SPLITS,
    download: bool = True,
) -> ETHECData:
    """Load the ETHEC split JSON files that exist (val and test at least).

    The hierarchy is built from the label paths of every loaded split. A split
    file that is absent (``train.json`` is distributed with the images, not
    with the public split files) is listed in ``missing_splits``.
    """
    for s in splits:
        if s not in SPLITS:
            raise ValueError(f"unknown ETHEC split {s!r}; choose from {SPLITS}")
    need = [f"{s}.json" for s in splits if s != "train"]
    d = require_files("ethec", need, data_dir=data_dir, url_for=_url, download=download, what="ETHEC split files")
    raw, missing = {}, []
    for s in splits:
        p = d / f"{s}.json"
        if not p.is_file():
            missing.append(s)
            continue
        raw[s] = _read_split(p)
    h = Hierarchy.from_label_paths((row for s in raw.values() for row in s[1]), name="ethec")
    loaded = {}
    for s, (tokens, paths, files) in raw.items():
        lp = np.asarray(paths, dtype=object).reshape(-1, len(LEVELS))
        ids = h.encode(lp.ravel()).reshape(lp.shape)
        loaded[s] = ETHECSplit(tokens=tokens, label_paths=lp, labels=ids, image_files=files)
    return ETHECData(hierarchy=h, splits=loaded, directory=d, missing_splits=tuple(missing))


def ethec_hierarchy(data_dir: str | os.PathLike | None = None, download: bool = True) -> Hierarchy:
    """Just the ETHEC Merged label hierarchy (723 labels from the public val + test files)."""
    return load_ethec(data_dir, download=download).hierarchy


__all__ = ["ETHECData", "ETHECSplit", "LEVELS", "load_ethec", "ethec_hierarchy", "label_path", "data_root"]
