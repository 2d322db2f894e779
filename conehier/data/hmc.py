"""Hierarchical multi-label classification (HMC) benchmarks in ARFF, as used by C-HMCNN.

Data sets (files flat in ``ROOT/hmc``; public source: the ``HMC_data`` folder of
github.com/EGiunchiglia/C-HMCNN):

* yeast gene function with the FunCat tree, ``<set>_FUN`` (``cellcycle``, ``church``,
  ``derisi``, ``eisen``, ``expr``, ``gasch1``, ``gasch2``, ``pheno``, ``seq``, ``spo``):
  ``<set>_FUN.{train,valid,test}.arff``;
* the same with the Gene Ontology DAG, ``<set>_GO``: ``<set>_GO.{train,valid,test}.arff``;
* image features: ``Diatoms`` (``Diatoms_{train,test}.arff``), ``ImCLEF07A`` and
  ``ImCLEF07D`` (``<name>_{Train,Test}.arff``). These have no validation file:
  :meth:`HMCDataset.split_validation` carves one out of train.

(``expr_FUN`` / ``expr_GO`` have no public training file.)

The ARFF files
--------------
Attributes are ``numeric`` (``real``, ``integer``) or nominal ``{a,b,c}``; ``?`` marks a
missing value; values may be quoted (``'a b'``). One attribute (the last one in
these files) is declared ``hierarchical`` and lists the label hierarchy:

* ``kind="paths"`` (FunCat, Diatoms, ImCLEF): each term is a path ``01/01/03``;
  its parent is the path without the last segment (``01/01``); a one-segment term
  hangs from ``"root"``. Prefixes that are not declared themselves are added.
  Node names are the full paths.
* ``kind="edges"`` (GO): each term is an edge ``parent/child``; ``"root"`` is the top,
  and GO0003674, GO0005575, GO0008150 are the three ontologies under it. A DAG.

An instance's class value lists its labels separated by ``@``; the label matrix
sets them and every ancestor (root included).

Node order: ``"root"`` first, then by distance from the root (number of path
segments for FunCat), then by name -- C-HMCNN's order up to where the root sits.

Preprocessing (:func:`load_hmc`)
--------------------------------
Statistics come from the training split only and are applied to valid / test:

1. a missing numeric value is replaced by the training mean of its column
   (a column with no observed training value gets 0);
2. numeric columns are standardised ``(x - mean) / std`` with the training mean
   and the (population, ``ddof=0``) std of the imputed training column, so the
   training features have mean 0 and std 1 exactly. A column that is constant in
   train keeps scale 1: it is only centred (train all 0), as scikit-learn's
   ``StandardScaler`` does;
3. a nominal attribute becomes one 0/1 column per declared category (in
   declaration order, named ``attr=category``); a missing value is all zeros.
   One-hot columns are left as 0/1 unless ``scale_onehot=True``, which
   standardises them too (what C-HMCNN does: it scales every column).

Differences from C-HMCNN's own script, for the record: it imputes each file with
that file's own means and fits the scaler on train + valid for the FUN/GO sets;
here every statistic comes from train. For Diatoms / ImCLEF it holds out
``test_size=0.30`` of train with scikit-learn's ``train_test_split`` for its
hyper-parameter search; :meth:`HMCDataset.split_validation` draws the same
permutation (``fraction=0.3`` reproduces its split exactly; the default is 0.2).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ..hierarchy.errors import UnknownLabelError
from ..hierarchy.graph import Hierarchy
from .paths import require_files

__all__ = [
    "ArffData",
    "ArffFormatError",
    "GO_ROOTS",
    "HMCDataset",
    "HMC_DATASETS",
    "ROOT",
    "hmc_files",
    "load_hmc",
    "load_hmc_files",
    "read_arff",
]

ROOT = "root"
GO_ROOTS = ("GO0003674", "GO0005575", "GO0008150")
#: Nodes never evaluated (C-HMCNN's ``to_skip``).
SKIP_EVAL = frozenset((ROOT, *GO_ROOTS))

URL = "https://raw.githubusercontent.com/EGiunchiglia/C-HMCNN/master/HMC_data/{}"

_YEAST = ("cellcycle", "church", "derisi", "eisen", "expr", "gasch1", "gasch2", "pheno", "seq", "spo")
_OTHERS = {"Diatoms": ("train", "test"), "ImCLEF07A": ("Train", "Test"), "ImCLEF07D": ("Train", "Test")}
_NO_PUBLIC = frozenset({"expr_FUN.train.arff", "expr_GO.train.arff"})

#: Every data set name :func:`load_hmc` knows.
HMC_DATASETS: tuple[str, ...] = (
    tuple(f"{y}_FUN" for y in _YEAST) + tuple(f"{y}_GO" for y in _YEAST) + tuple(_OTHERS)
)
_CANONICAL = {n.lower(): n for n in HMC_DATASETS}

Kind = Literal["paths", "edges"]


class ArffFormatError(ValueError):
    """An ARFF file that cannot be read: bad header, wrong number of values, bad value.

    The message names the file and, for the data section, the line number (1-based).
    """


# ---------------------------------------------------------------------- names
def _canonical(name: str) -> str:
    n = name.strip()
    if n.lower().startswith("hmc:"):
        n = n[4:]
    try:
        return _CANONICAL[n.lower()]
    except KeyError:
        close = difflib.get_close_matches(n, HMC_DATASETS, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown HMC data set {name!r}{hint} Known: {', '.join(HMC_DATASETS)}") from None


def _kind_of(name: str) -> Kind:
    return "edges" if name.endswith("_GO") else "paths"


def hmc_files(name: str) -> dict[str, str]:
    """File names of data set ``name`` per split (``train``, [``valid``,] ``test``)."""
    n = _canonical(name)
    if n in _OTHERS:
        tr, te = _OTHERS[n]
        return {"train": f"{n}_{tr}.arff", "test": f"{n}_{te}.arff"}
    return {s: f"{n}.{s}.arff" for s in ("train", "valid", "test")}


def _url_for(fname: str) -> str | None:
    if fname in _NO_PUBLIC:
        return None
    m = re.fullmatch(r"(\w+?)_(FUN|GO)\.(train|valid|test)\.arff", fname)
    if m:
        return URL.format(f"datasets_{m.group(2)}/{m.group(1)}_{m.group(2)}/{fname}")
    if re.fullmatch(r"(Diatoms_(train|test)|ImCLEF07[AD]_(Train|Test))\.arff", fname):
        return URL.format(f"others/{fname}")
    return None


# -------------------------------------------------------------------- parsing
def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def _split_values(s: str) -> list[str]:
    """Comma-separated values; quoted ones (``'a, b'``) may hold commas. Tokens keep their quotes."""
    if "'" not in s and '"' not in s:
        return s.split(",")
    out, i, n = [], 0, len(s)
    while True:
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] in "'\"":
            q, j = s[i], i + 1
            while j < n and s[j] != q:
                j += 2 if s[j] == "\\" else 1
            if j >= n:
                raise ValueError(f"unterminated quote in {s[i:i + 40]!r}")
            tok, i = s[i:j + 1], j + 1
            while i < n and s[i] in " \t":
                i += 1
            if i < n and s[i] != ",":
                raise ValueError(f"text after the quoted value {tok!r}")
        else:
            j = s.find(",", i)
            j = n if j < 0 else j
            tok, i = s[i:j], j
        out.append(tok)
        if i >= n:
            return out
        i += 1  # the comma


@dataclass(frozen=True)
class _Attribute:
    name: str
    type: str  # "numeric", "nominal" or "hierarchical"
    categories: tuple[str, ...] = ()
    spec: str = ""  # the hierarchical declaration


def _parse_attribute(rest: str, path: Path, lineno: int) -> _Attribute:
    rest = rest.strip()
    if rest[:1] in ("'", '"'):
        end = rest.find(rest[0], 1)
        if end < 0:
            raise ArffFormatError(f"{path}, line {lineno}: unterminated quoted attribute name")
        name, spec = rest[1:end], rest[end + 1:].strip()
    else:
        parts = rest.split(None, 1)
        name, spec = parts[0] if parts else "", parts[1].strip() if len(parts) > 1 else ""
    if not name or not spec:
        raise ArffFormatError(f"{path}, line {lineno}: @attribute needs a name and a type, got {rest!r}")
    low = spec.lower()
    if low in ("numeric", "real", "integer"):
        return _Attribute(name, "numeric")
    if spec.startswith("{"):
        if not spec.endswith("}"):
            raise ArffFormatError(f"{path}, line {lineno}: nominal attribute {name!r} lacks its closing '}}'")
        try:
            cats = tuple(_unquote(c) for c in _split_values(spec[1:-1]))
        except ValueError as exc:
            raise ArffFormatError(f"{path}, line {lineno}: attribute {name!r}: {exc}") from None
        if not cats or any(c == "" for c in cats) or len(set(cats)) != len(cats):
            raise ArffFormatError(
                f"{path}, line {lineno}: nominal attribute {name!r} needs distinct, non-empty categories, got {spec!r}"
            )
        return _Attribute(name, "nominal", cats)
    if low.startswith("hierarchical"):
        decl = spec[len("hierarchical"):].strip()
        if not decl:
            raise ArffFormatError(f"{path}, line {lineno}: hierarchical attribute {name!r} declares no terms")
        return _Attribute(name, "hierarchical", spec=decl)
    raise ArffFormatError(
        f"{path}, line {lineno}: attribute {name!r} has type {spec.split()[0]!r}; "
        "supported: numeric / real / integer, nominal {a,b,...}, hierarchical"
    )


def _build_hierarchy(decl: str, kind: Kind, path: Path) -> Hierarchy:
    terms = [t.strip() for t in decl.split(",")]
    if any(t == "" for t in terms):
        raise ArffFormatError(f"{path}: empty term in the hierarchical class declaration")
    pairs: dict[tuple[str, str], None] = {}
    if kind == "paths":
        for t in terms:
            segs = t.split("/")
            if any(s == "" for s in segs):
                raise ArffFormatError(f"{path}: malformed hierarchy path {t!r} in the class declaration")
            prev = ROOT
            for i in range(1, len(segs) + 1):
                node = "/".join(segs[:i])
                pairs[(prev, node)] = None
                prev = node
    elif kind == "edges":
        for t in terms:
            segs = t.split("/")
            if len(segs) != 2 or not segs[0] or not segs[1]:
                raise ArffFormatError(f"{path}: hierarchy term {t!r} is not a 'parent/child' edge")
            pairs[(segs[0], segs[1])] = None
    else:
        raise ValueError(f"kind must be 'paths' or 'edges', got {kind!r}")
    # order: by distance from the sources (multi-source BFS), "root" first, then by name
    children: dict[str, list[str]] = {}
    indeg: dict[str, int] = {}
    for p, c in pairs:
        children.setdefault(p, []).append(c)
        indeg.setdefault(p, 0)
        indeg[c] = indeg.get(c, 0) + 1
    level = {v: 0 for v, d in indeg.items() if d == 0}
    frontier, k = list(level), 0
    while frontier:
        k += 1
        nxt = []
        for v in frontier:
            for c in children.get(v, ()):
                if c not in level:
                    level[c] = k
                    nxt.append(c)
        frontier = nxt
    far = k + 1  # nodes on a cycle only: let Hierarchy report the cycle
    names = sorted(indeg, key=lambda v: (level.get(v, far), v != ROOT, v))
    return Hierarchy.from_edges(list(pairs), names=names, name=path.stem)


@dataclass(frozen=True, eq=False, repr=False)
class ArffData:
    """One ARFF file, parsed but not preprocessed.

    ``X`` ``(N, F)`` float64: numeric attributes as read (NaN where missing) and
    nominal ones one-hot (all zeros where missing); ``numeric[j]`` tells which.
    ``Y`` ``(N, n)`` uint8 labels closed under ancestors; ``lines`` the 1-based line
    number of each instance in the file.
    """

    path: Path
    relation: str
    hierarchy: Hierarchy
    X: np.ndarray
    Y: np.ndarray
    feature_names: tuple[str, ...]
    numeric: np.ndarray
    lines: np.ndarray
    declaration: str = ""

    def __repr__(self) -> str:
        return f"<ArffData {self.path.name}: {len(self.X)} instances, {self.X.shape[1]} features, {self.hierarchy.n} nodes>"


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_arff(path: str | os.PathLike, kind: Kind = "paths", *, hierarchy: Hierarchy | None = None,
              declaration: str | None = None) -> ArffData:
    """Parse one HMC ARFF file.

    ``kind`` says how to read the ``hierarchical`` declaration (``"paths"`` or
    ``"edges"``, see the module docs). Passing the ``hierarchy`` and
    ``declaration`` of another file of the same data set reuses that hierarchy
    when this file declares the same terms.

    Raises :class:`ArffFormatError` (bad header, wrong number of values, a value
    that is not a number or not a declared category) and
    :class:`~conehier.hierarchy.UnknownLabelError` (an instance label not in the
    declared hierarchy), naming the file and line.
    """
    if kind not in ("paths", "edges"):
        raise ValueError(f"kind must be 'paths' (FunCat, Diatoms, ImCLEF) or 'edges' (GO), got {kind!r}")
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    relation, attrs, data_at = "", [], None
    for i, line in enumerate(lines):
        s = line.strip()
        if not s or s.startswith("%"):
            continue
        low = s.lower()
        if low.startswith("@relation"):
            relation = _unquote(s[len("@relation"):])
        elif low.startswith("@attribute"):
            attrs.append(_parse_attribute(s[len("@attribute"):], path, i + 1))
        elif low.startswith("@data"):
            data_at = i
            break
        else:
            raise ArffFormatError(f"{path}, line {i + 1}: expected @relation, @attribute or @data, got {s[:60]!r}")
    if data_at is None:
        raise ArffFormatError(f"{path}: no @data line: not an ARFF file, or a truncated one")
    hier_at = [j for j, a in enumerate(attrs) if a.type == "hierarchical"]
    if len(hier_at) != 1:
        raise ArffFormatError(
            f"{path}: expected exactly one 'hierarchical' class attribute in the header, found {len(hier_at)}"
        )
    ci = hier_at[0]
    decl = attrs[ci].spec
    if hierarchy is not None and declaration == decl:
        h = hierarchy
    else:
        h = _build_hierarchy(decl, kind, path)
    n_attr = len(attrs)

    # ---- data section: split lines into values
    body = lines[data_at + 1:]
    keep = [k for k, ln in enumerate(body) if ln.strip() and not ln.lstrip().startswith("%")]
    line_no = np.asarray(keep, dtype=np.int64) + data_at + 2
    rows = []
    for k in keep:
        ln = body[k].strip()
        if ln.startswith("{"):
            raise ArffFormatError(f"{path}, line {k + data_at + 2}: sparse ARFF instances ({{...}}) are not supported")
        try:
            rows.append(_split_values(ln))
        except ValueError as exc:
            raise ArffFormatError(f"{path}, line {k + data_at + 2}: {exc}") from None
    if not rows:
        raise ArffFormatError(f"{path}: no instances after @data")
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(counts != n_attr)
    if bad.size:
        b = int(bad[0])
        raise ArffFormatError(
            f"{path}, line {line_no[b]}: expected {n_attr} comma-separated values "
            f"({n_attr - 1} attributes and the class), found {counts[b]}"
        )
    cols = list(zip(*rows))
    del rows
    N = len(line_no)

    # ---- features
    blocks, names, numeric = [], [], []
    for j, a in enumerate(attrs):
        if j == ci:
            continue
        col = cols[j]
        if a.type == "numeric":
            blocks.append(_numeric_column(col, a.name, path, line_no)[:, None])
            names.append(a.name)
            numeric.append(True)
        else:
            index = {c: t for t, c in enumerate(a.categories)}
            codes = np.empty(N, dtype=np.int64)
            for r, v in enumerate(col):
                v = _unquote(v)
                if v == "?":
                    codes[r] = -1
                    continue
                try:
                    codes[r] = index[v]
                except KeyError:
                    raise ArffFormatError(
                        f"{path}, line {line_no[r]}: value {v!r} of nominal attribute {a.name!r} is not one of its "
                        f"categories {{{','.join(a.categories)}}}"
                    ) from None
            onehot = np.zeros((N, len(a.categories)), dtype=np.float64)
            ok = codes >= 0
            onehot[np.flatnonzero(ok), codes[ok]] = 1.0
            blocks.append(onehot)
            names.extend(f"{a.name}={c}" for c in a.categories)
            numeric.extend([False] * len(a.categories))
    X = np.concatenate(blocks, axis=1) if blocks else np.zeros((N, 0))

    # ---- labels
    index = {nm: t for t, nm in enumerate(h.names)}
    r_idx, c_idx = [], []
    for r, v in enumerate(cols[ci]):
        v = _unquote(v)
        if v in ("?", ""):
            continue
        for lab in v.split("@"):
            lab = lab.strip()
            try:
                c_idx.append(index[lab])
            except KeyError:
                raise UnknownLabelError(lab, h.names, where=f"{path}, line {line_no[r]}") from None
            r_idx.append(r)
    Y = np.zeros((N, h.n), dtype=np.uint8)
    Y[r_idx, c_idx] = 1
    Y = h.close_labels(Y)
    return ArffData(path, relation, h, X, Y, tuple(names), np.asarray(numeric, bool), line_no, decl)


def _numeric_column(col: Sequence[str], name: str, path: Path, line_no: np.ndarray) -> np.ndarray:
    try:
        out = np.array(col, dtype=np.float64)  # fast path: no '?' and no quotes
        missing = None
    except ValueError:
        out = np.empty(len(col), dtype=np.float64)
        missing = np.zeros(len(col), dtype=bool)
        for r, v in enumerate(col):
            v = _unquote(v)
            if v == "?":
                out[r], missing[r] = np.nan, True
                continue
            try:
                out[r] = float(v)
            except ValueError:
                raise ArffFormatError(
                    f"{path}, line {line_no[r]}: value {v!r} of numeric attribute {name!r} is not a number"
                ) from None
    bad = ~np.isfinite(out)
    if missing is not None:
        bad &= ~missing
    if bad.any():  # a literal nan / inf: '?' is the only missing-value marker
        r = int(np.flatnonzero(bad)[0])
        raise ArffFormatError(
            f"{path}, line {line_no[r]}: attribute {name!r} has the non-finite value {col[r].strip()!r} "
            "(write '?' for a missing value)"
        )
    return out


# -------------------------------------------------------------- preprocessing
def _fit(X: np.ndarray, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training ``mean`` (imputation value and centre) and ``scale`` per column."""
    F = X.shape[1]
    mean, scale = np.zeros(F), np.ones(F)
    if F == 0 or not scaled.any():
        return mean, scale
    sub = X[:, scaled]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> mean 0 below
        m = np.nanmean(sub, axis=0) if len(sub) else np.zeros(sub.shape[1])
    m = np.where(np.isfinite(m), m, 0.0)
    imp = np.where(np.isnan(sub), m, sub)
    sd = imp.std(axis=0)
    const = imp.max(axis=0) == imp.min(axis=0) if len(imp) else np.ones(sub.shape[1], bool)
    mean[scaled] = m
    scale[scaled] = np.where(const | ~(sd > 0), 1.0, sd)
    return mean, scale


def _transform(X: np.ndarray, mean: np.ndarray, scale: np.ndarray, what: str, names: Sequence[str]) -> np.ndarray:
    Z = ((np.where(np.isnan(X), mean, X) - mean) / scale).astype(np.float32)
    if not np.isfinite(Z).all():  # a bug, not bad input: inputs were checked to be finite or '?'
        r, c = np.argwhere(~np.isfinite(Z))[0]
        raise RuntimeError(f"non-finite feature after preprocessing ({what}, row {r}, column {names[c]!r})")
    return Z


# -------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class _Raw:
    X: dict
    Y: dict
    numeric: np.ndarray
    scale_onehot: bool


@dataclass(frozen=True, eq=False, repr=False)
class HMCDataset:
    """A preprocessed HMC benchmark.

    ``X_*``: ``(N, F)`` float32 features (see the module docs for the
    preprocessing). ``Y_*``: ``(N, n)`` uint8 labels over ``hierarchy`` (its ``n``
    nodes include ``"root"``), closed under ancestors. ``X_valid`` / ``Y_valid``
    are ``None`` when the data set has no validation file (Diatoms, ImCLEF) and
    no split was carved. ``eval_mask``: ``(n,)`` bool, the nodes to evaluate
    (all but ``"root"`` and, for GO, the three ontology roots).
    ``feature_mean`` / ``feature_scale``: the training statistics used,
    ``X = (x_imputed - mean) / scale``. ``valid_source``: ``"file"``,
    ``"split(fraction=..., seed=...)"`` or ``"none"``.
    """

    name: str
    hierarchy: Hierarchy
    X_train: np.ndarray
    X_valid: np.ndarray | None
    X_test: np.ndarray
    Y_train: np.ndarray
    Y_valid: np.ndarray | None
    Y_test: np.ndarray
    eval_mask: np.ndarray
    feature_names: tuple[str, ...]
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    valid_source: str = "file"
    _raw: _Raw | None = field(default=None, compare=False)

    @property
    def splits(self) -> dict[str, int]:
        """Samples per split; ``"valid"`` only when there is one."""
        out = {"train": len(self.X_train)}
        if self.X_valid is not None:
            out["valid"] = len(self.X_valid)
        out["test"] = len(self.X_test)
        return out

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_labels(self) -> int:
        """Nodes of the hierarchy (label columns), root included; ``eval_mask.sum()`` are evaluated."""
        return self.hierarchy.n

    def __repr__(self) -> str:
        sp = ", ".join(f"{k} {v}" for k, v in self.splits.items())
        return (
            f"<HMCDataset {self.name!r}: {sp}; {self.n_features} features; "
            f"{self.n_labels} nodes ({int(self.eval_mask.sum())} evaluated)>"
        )

    def split_validation(self, fraction: float = 0.2, seed: int = 0) -> "HMCDataset":
        """Hold out ``fraction`` of train as the validation split (for sets without a valid file).

        Draws ``np.random.RandomState(seed).permutation(N)``: the first
        ``ceil(fraction * N)`` samples are the validation split and the rest,
        in permutation order, the training split -- the same split as
        scikit-learn's ``train_test_split(..., test_size=fraction, random_state=seed)``
        (C-HMCNN uses ``test_size=0.30``). The preprocessing is fitted again on
        the reduced training split.
        """
        if self.X_valid is not None:
            raise ValueError(f"{self.name} already has a validation split ({self.valid_source})")
        if self._raw is None:
            raise ValueError(f"{self.name}: no raw data kept to split from")
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        X, Y = self._raw.X["train"], self._raw.Y["train"]
        n = len(X)
        n_val = math.ceil(fraction * n)
        if not 0 < n_val < n:
            raise ValueError(f"fraction {fraction} of {n} training samples leaves an empty split")
        perm = np.random.RandomState(seed).permutation(n)
        va, tr = perm[:n_val], perm[n_val:]
        raw = _Raw(
            {"train": X[tr], "valid": X[va], "test": self._raw.X["test"]},
            {"train": Y[tr], "valid": Y[va], "test": self._raw.Y["test"]},
            self._raw.numeric,
            self._raw.scale_onehot,
        )
        return _assemble(self.name, self.hierarchy, self.feature_names, raw,
                         f"split(fraction={fraction}, seed={seed})")


def _assemble(name: str, h: Hierarchy, feature_names: tuple[str, ...], raw: _Raw, valid_source: str) -> HMCDataset:
    scaled = np.ones_like(raw.numeric) if raw.scale_onehot else raw.numeric
    mean, scale = _fit(raw.X["train"], scaled)
    X = {s: _transform(x, mean, scale, f"{name} {s}", feature_names) for s, x in raw.X.items()}
    eval_mask = np.array([nm not in SKIP_EVAL for nm in h.names], dtype=bool)
    return HMCDataset(
        name=name,
        hierarchy=h,
        X_train=X["train"],
        X_valid=X.get("valid"),
        X_test=X["test"],
        Y_train=raw.Y["train"],
        Y_valid=raw.Y.get("valid"),
        Y_test=raw.Y["test"],
        eval_mask=eval_mask,
        feature_names=feature_names,
        feature_mean=mean,
        feature_scale=scale,
        valid_source=valid_source,
        _raw=raw,
    )


def load_hmc_files(
    train: str | os.PathLike,
    test: str | os.PathLike,
    valid: str | os.PathLike | None = None,
    *,
    kind: Kind = "paths",
    name: str | None = None,
    scale_onehot: bool = False,
) -> HMCDataset:
    """An :class:`HMCDataset` from explicit ARFF files (see :func:`load_hmc`).

    Every file must declare the same attributes and the same hierarchy as ``train``.
    """
    files = {"train": Path(train)}
    if valid is not None:
        files["valid"] = Path(valid)
    files["test"] = Path(test)
    first = read_arff(files["train"], kind)
    parsed = {"train": first}
    for split, p in files.items():
        if split == "train":
            continue
        d = read_arff(p, kind, hierarchy=first.hierarchy, declaration=first.declaration)
        if d.hierarchy is not first.hierarchy and d.hierarchy != first.hierarchy:
            raise ArffFormatError(
                f"{p}: its class hierarchy ({d.hierarchy.n} nodes) differs from the one in {files['train']} "
                f"({first.hierarchy.n} nodes)"
            )
        if d.feature_names != first.feature_names:
            k = next((k for k, (a, b) in enumerate(zip(d.feature_names, first.feature_names)) if a != b),
                     min(len(d.feature_names), len(first.feature_names)))
            this = d.feature_names[k] if k < len(d.feature_names) else "<none>"
            that = first.feature_names[k] if k < len(first.feature_names) else "<none>"
            raise ArffFormatError(
                f"{p}: its features differ from those of {files['train']} (feature {k}: {this!r} vs {that!r})"
            )
        parsed[split] = d
    raw = _Raw({s: d.X for s, d in parsed.items()}, {s: d.Y for s, d in parsed.items()}, first.numeric, scale_onehot)
    name = name or files["train"].stem.split(".")[0]
    first.hierarchy.name = name  # built here, owned by nobody else yet
    return _assemble(name, first.hierarchy, first.feature_names, raw, "file" if valid is not None else "none")


def load_hmc(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    valid_fraction: float | None = None,
    seed: int = 0,
    scale_onehot: bool = False,
) -> HMCDataset:
    """Load HMC benchmark ``name`` (``"cellcycle_FUN"``, ``"pheno_GO"``, ``"Diatoms"``, ``"ImCLEF07A"``, ...).

    Case-insensitive; an ``"hmc:"`` prefix is ignored. Files are looked up in
    ``data_dir`` > ``$CONEHIER_DATA`` > the cache (``hmc/`` subfolder) and downloaded
    from the C-HMCNN repository into the cache when missing and ``download``;
    otherwise :class:`~conehier.data.paths.DataNotFoundError` says where they were
    expected. ``valid_fraction``: for sets without a validation file, carve one
    out of train (:meth:`HMCDataset.split_validation` with ``seed``).
    ``scale_onehot``: standardise the one-hot columns too (as C-HMCNN).
    """
    canon = _canonical(name)
    files = hmc_files(canon)
    d = require_files("hmc", list(files.values()), data_dir=data_dir, url_for=_url_for, download=download,
                      what=f"HMC data set {canon!r}")
    ds = load_hmc_files(
        d / files["train"], d / files["test"], d / files["valid"] if "valid" in files else None,
        kind=_kind_of(canon), name=canon, scale_onehot=scale_onehot,
    )
    if valid_fraction is not None:
        if "valid" in files:
            raise ValueError(f"{canon} has its own validation file; valid_fraction is for Diatoms / ImCLEF")
        ds = ds.split_validation(valid_fraction, seed)
    return ds
