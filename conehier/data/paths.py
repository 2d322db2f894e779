"""Where data files live: ``data_dir`` argument > ``$CONEHIER_DATA`` > a download cache.

Layout of a data root (the same as ``../shared/data``)::

    ROOT/wordnet/noun_closure.tsv.train_0percent ...
    ROOT/ethec/train.json, val.json, test.json
    ROOT/hmc/cellcycle_FUN.train.arff ...

:func:`require_files` looks for the files under the data root; if any is
missing and a public URL is known, it downloads it into the cache
(``$CONEHIER_CACHE`` or ``~/.cache/conehier``). Offline or without a URL it
raises :class:`DataNotFoundError` saying exactly where the files are expected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

ENV_DATA = "CONEHIER_DATA"
ENV_CACHE = "CONEHIER_CACHE"
ENV_OFFLINE = "CONEHIER_OFFLINE"  # set to 1 to never try a download


class DataNotFoundError(FileNotFoundError):
    """Reference data is missing and could not be downloaded."""


def cache_dir() -> Path:
    """The download cache: ``$CONEHIER_CACHE`` or ``~/.cache/conehier``."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "conehier")


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else ``$CONEHIER_DATA``, else the download cache."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(ENV_DATA)
    return Path(env) if env else cache_dir()


def _candidates(root: Path, subdir: str) -> list[Path]:
    # accept both ROOT/subdir/file and a data_dir that already is the subdir
    return [root / subdir, root]


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as resp, tempfile.NamedTemporaryFile(
        dir=dest.parent, delete=False
    ) as tmp:
        shutil.copyfileobj(resp, tmp)
    os.replace(tmp.name, dest)


def require_files(
    subdir: str,
    files: Sequence[str],
    *,
    data_dir: str | os.PathLike | None = None,
    url_for: Callable[[str], str | None] | None = None,
    download: bool = True,
    what: str = "data",
) -> Path:
    """Directory holding every file in ``files`` (relative to ``subdir`` of the data root).

    Missing files are downloaded into the cache when ``url_for`` gives a URL and
    ``download`` is true. Raises :class:`DataNotFoundError` otherwise.
    """
    root = data_root(data_dir)
    for d in _candidates(root, subdir):
        if all((d / f).is_file() for f in files):
            return d
    explicit = data_dir is not None or os.environ.get(ENV_DATA)
    target = cache_dir() / subdir
    if all((target / f).is_file() for f in files):
        return target
    errors = []
    download = download and os.environ.get(ENV_OFFLINE, "") in ("", "0")
    if download and url_for is not None:
        for f in files:
            if (target / f).is_file():
                continue
            url = url_for(f)
            if url is None:
                errors.append(f"{f}: no public download")
                continue
            try:
                _download(url, target / f)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{f}: download from {url} failed ({exc})")
                break
        if not errors and all((target / f).is_file() for f in files):
            return target
    where = root / subdir
    missing = [f for f in files if not (where / f).is_file()]
    msg = (
        f"{what} not found: expected {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''} in {where}"
        + (f" (from {'the data_dir argument' if data_dir is not None else '$' + ENV_DATA})" if explicit else "")
        + f". Set ${ENV_DATA} (or pass data_dir / --data-dir) to a folder with a '{subdir}/' subfolder"
        + (f", or go online so they can be downloaded into {target}" if url_for is not None else "")
        + "."
    )
    if errors:
        msg += " " + "; ".join(errors[:3])
    raise DataNotFoundError(msg)
