"""scikit-learn-style estimators over the library.

:class:`ConeClassifier` classifies images (any feature matrix: CNN features from a
feature cache, ARFF features of an HMC data set) by a joint image-label embedding
(:mod:`conehier.models.joint`, :mod:`conehier.training.joint`)::

    clf = ConeClassifier(geometry="hyperbolic-cones", dim=100).fit(X, label_paths, hierarchy=h)
    clf.predict(X_test)          # (N, L) label names, one per level (lowest energy)
    clf.predict_scores(X_test)   # (N, C) scores -E(label, image)
    clf.score(X_test, y_test)    # micro-F1 of the decision rule's label sets

Targets ``y`` are either

* label paths: one root-to-leaf sequence of names per sample (``("Nymphalidae",
  "Satyrinae", ...)``; ``None`` / ``""`` ends a path early), or a list of such paths
  per sample (multi-path); without ``hierarchy`` it is built by
  :meth:`Hierarchy.from_label_paths`; or
* a binary label matrix ``Y`` ``(N, C)`` over the hierarchy's nodes (``hierarchy``
  required), closed under ancestors on the way in.

The scikit-learn contract: ``__init__`` only stores its arguments, ``get_params`` /
``set_params`` work (so ``sklearn.base.clone`` does), fitted state ends in ``_``,
predicting before ``fit`` raises :class:`NotFittedError`, and bad input (wrong shape,
NaN, unknown label, a path that contradicts the hierarchy) raises a ``ValueError``
(:class:`~conehier.hierarchy.UnknownLabelError` for unknown labels) naming the problem.
scikit-learn itself is not needed.
"""

from __future__ import annotations

import inspect

import numpy as np

from .hierarchy.graph import Hierarchy
from .training.joint import (
    JointConfig,
    check_features,
    check_label_matrix,
    classification_metrics,
    default_eval_mask,
    evaluated_levels,
    fit_joint,
    predict_labels,
)

__all__ = ["ConeClassifier", "NotFittedError", "labels_to_matrix"]


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit`` (as ``sklearn.exceptions.NotFittedError``)."""


def _is_label_matrix(y) -> bool:
    if isinstance(y, np.ndarray):
        return y.ndim == 2 and y.dtype.kind in "biuf"
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError):
        return False
    return arr.ndim == 2 and arr.dtype.kind in "biuf"


def _paths_of(sample) -> list:
    """A sample's paths: a single path (sequence of names) or a list of paths."""
    if isinstance(sample, str):
        return [(sample,)]
    seq = list(sample)
    if seq and all(isinstance(p, (list, tuple)) for p in seq):
        return [tuple(p) for p in seq]
    return [tuple(seq)]


def _trim(path: tuple) -> tuple:
    out = []
    for lab in path:
        if lab is None or (isinstance(lab, str) and lab.strip() == ""):
            break
        out.append(lab if isinstance(lab, str) else str(lab))
    return tuple(out)


def labels_to_matrix(y, hierarchy: Hierarchy | None = None) -> tuple[np.ndarray, Hierarchy]:
    """``(N, C)`` bool ancestor-closed labels and the hierarchy from label paths or a label matrix.

    Label paths are checked against ``hierarchy``: every name must be a node
    (:class:`~conehier.hierarchy.UnknownLabelError` otherwise) and each entry of a path
    must be an ancestor of the next one.
    """
    if _is_label_matrix(y):
        if hierarchy is None:
            raise ValueError("a label matrix Y (N, C) needs the hierarchy its columns refer to: pass hierarchy=")
        return check_label_matrix(np.asarray(y), hierarchy), hierarchy
    samples = [[_trim(p) for p in _paths_of(s)] for s in y]
    if hierarchy is None:
        hierarchy = Hierarchy.from_label_paths([p for ps in samples for p in ps])
    rows, names, prev_i, next_i = [], [], [], []
    for i, ps in enumerate(samples):  # parsing names: one pass over the input strings
        for p in ps:
            base = len(names)
            names.extend(p)
            rows.extend([i] * len(p))
            prev_i.extend(range(base, base + len(p) - 1))
            next_i.extend(range(base + 1, base + len(p)))
    ids = hierarchy.encode(names)
    if prev_i:
        ok = hierarchy.is_edge_in_closure(ids[prev_i], ids[next_i])
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            a, b = names[prev_i[k]], names[next_i[k]]
            raise ValueError(f"sample {rows[prev_i[k]]}: label path has {a!r} before {b!r}, but {a!r} is not an "
                             f"ancestor of {b!r} in the hierarchy")
    Y = np.zeros((len(samples), hierarchy.n), bool)
    Y[np.asarray(rows, np.int64), ids] = True
    return hierarchy.close_labels(Y), hierarchy


class ConeClassifier:
    """Hierarchical image classifier by a joint image-label embedding.

    Parameters (all stored as given; see :class:`~conehier.training.joint.JointConfig`)
    ----------
    geometry: ``"order"``, ``"euclidean-cones"``, ``"euclidean-cones-cosine"`` or ``"hyperbolic-cones"``.
    dim: embedding dimension.
    K, margin: cone aperture constant, max-margin loss margin (``None``: geometry default).
    hidden, dropout: optional hidden layer of the image map (0: the thesis's linear ``W``).
    epochs, batch_size, optimizer, lr_labels, lr_W, weight_decay: training (``None`` lr: geometry default).
    k_parent, k_child, per_level: negatives per positive and pick-per-level sampling.
    label_init: ``"random"`` or ``"embed"`` (a label-only run first).
    decision, threshold: the rule turning scores into label sets (``"auto"``, ``"level-argmax"``,
        ``"threshold"``; ``"ofadb"`` / ``"pcdb"``), tuned on validation.
    valid_fraction: share of the training samples held out (seeded) for the best epoch and the
        thresholds when ``fit`` gets no ``validation_data`` (0: none; thresholds then tuned on train).
    eval_every, patience, seed, device, dtype, threads, verbose.

    Fitted attributes: ``hierarchy_``, ``classes_`` (node names), ``n_features_in_``,
    ``levels_`` (node ids per evaluated level), ``eval_mask_``, ``decision_``,
    ``thresholds_``, ``result_`` (:class:`~conehier.training.joint.JointResult`),
    ``model_``, ``history_``, ``best_epoch_``.
    """

    def __init__(
        self,
        geometry: str = "hyperbolic-cones",
        dim: int = 10,
        *,
        K: float = 0.1,
        margin: float | None = None,
        hidden: int = 0,
        dropout: float = 0.0,
        epochs: int = 30,
        batch_size: int = 100,
        optimizer: str = "adam",
        lr_labels: float | None = None,
        lr_W: float | None = None,
        weight_decay: float = 0.0,
        k_parent: int = 5,
        k_child: int = 5,
        per_level: bool = True,
        label_init: str = "random",
        decision: str = "auto",
        threshold: str = "ofadb",
        valid_fraction: float = 0.1,
        eval_every: int = 1,
        patience: int | None = None,
        seed: int = 0,
        device: str | None = None,
        dtype: str = "float32",
        threads: int | None = None,
        verbose: bool = False,
    ):
        self.geometry = geometry
        self.dim = dim
        self.K = K
        self.margin = margin
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr_labels = lr_labels
        self.lr_W = lr_W
        self.weight_decay = weight_decay
        self.k_parent = k_parent
        self.k_child = k_child
        self.per_level = per_level
        self.label_init = label_init
        self.decision = decision
        self.threshold = threshold
        self.valid_fraction = valid_fraction
        self.eval_every = eval_every
        self.patience = patience
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self.threads = threads
        self.verbose = verbose

    # ------------------------------------------------------- sklearn protocol
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor arguments (scikit-learn's ``get_params``)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params) -> "ConeClassifier":
        """Set constructor arguments; unknown names raise ``ValueError``."""
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for ConeClassifier; valid: {', '.join(sorted(valid))}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {k: p.default for k, p in inspect.signature(type(self).__init__).parameters.items() if k != "self"}
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults.get(k))
        return f"ConeClassifier({args})"

    def _config(self) -> JointConfig:
        p = self.get_params()
        p.pop("valid_fraction")
        p.pop("verbose")
        return JointConfig(**p)

    def _check_fitted(self) -> None:
        if not hasattr(self, "result_"):
            raise NotFittedError("this ConeClassifier is not fitted yet: call fit(X, y) first")

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, *, hierarchy: Hierarchy | None = None, validation_data=None, eval_mask=None,
            label_init=None) -> "ConeClassifier":
        """Train on features ``X`` ``(N, F)`` and targets ``y`` (label paths or ``Y`` ``(N, C)``).

        ``validation_data``: ``(X_valid, y_valid)`` for the best epoch and the thresholds
        (default: ``valid_fraction`` of ``X`` held out). ``eval_mask``: ``(C,)`` nodes that
        count in scores and metrics (default: all but nodes that are ancestors of every
        other node, e.g. a synthetic root). ``label_init``: a label-only
        :class:`~conehier.pipeline.EmbedResult` to start the labels from.
        """
        cfg = self._config()  # validates the parameters first
        if hierarchy is not None and not isinstance(hierarchy, Hierarchy):
            raise TypeError(f"hierarchy must be a conehier Hierarchy, got {type(hierarchy).__name__}")
        X = check_features(X, name="X")
        Y, h = labels_to_matrix(y, hierarchy)
        if len(Y) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(Y)}")
        if len(X) == 0:
            raise ValueError("X has no samples")
        if eval_mask is None:
            eval_mask = default_eval_mask(h)
        eval_mask = np.asarray(eval_mask, bool)
        if eval_mask.shape != (h.n,):
            raise ValueError(f"eval_mask must have shape ({h.n},), got {eval_mask.shape}")
        if validation_data is not None:
            Xv, yv = validation_data
            Xv = check_features(Xv, X.shape[1], name="X_valid")
            Yv, _ = labels_to_matrix(yv, h)
            Xt, Yt = X, Y
        elif self.valid_fraction and len(X) >= 2:
            if not 0 < self.valid_fraction < 1:
                raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
            perm = np.random.default_rng(self.seed).permutation(len(X))
            n_val = min(len(X) - 1, max(1, int(round(self.valid_fraction * len(X)))))
            va, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            Xt, Yt, Xv, Yv = X[tr], Y[tr], X[va], Y[va]
        else:
            Xt, Yt, Xv, Yv = X, Y, None, None
        log = print if self.verbose else None
        res = fit_joint(Xt, Yt, h, cfg, X_valid=Xv, Y_valid=Yv, eval_mask=eval_mask, label_init=label_init,
                        progress=False, log=log)
        self.result_ = res
        self.model_ = res.model
        self.hierarchy_ = h
        self.classes_ = np.asarray(h.names, dtype=object)
        self.n_features_in_ = int(X.shape[1])
        self.eval_mask_ = eval_mask
        self.levels_ = evaluated_levels(h, eval_mask)
        self.decision_ = res.decision
        self.thresholds_ = res.thresholds
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        return self

    # -------------------------------------------------------------- predict
    def predict_energies(self, X) -> np.ndarray:
        """``(N, C)`` energies ``E(label, image)`` (lower = more likely)."""
        self._check_fitted()
        return self.result_.energies(check_features(X, self.n_features_in_, name="X"))

    def predict_scores(self, X) -> np.ndarray:
        """``(N, C)`` scores ``-E(label, image)`` (higher = more likely), e.g. for AU(PRC) and hit@k."""
        return -self.predict_energies(X)

    decision_function = predict_scores

    def predict(self, X) -> np.ndarray:
        """``(N, L)`` object array: per evaluated level, the name of the label with the lowest energy."""
        s = self.predict_scores(X)
        cols = [nodes[np.argmax(s[:, nodes], axis=1)] for nodes in self.levels_]
        ids = np.stack(cols, axis=1) if cols else np.zeros((len(s), 0), np.int64)
        return self.classes_[ids]

    def predict_label_matrix(self, X) -> np.ndarray:
        """``(N, C)`` bool label sets of the fitted decision rule (thresholds tuned on validation)."""
        s = self.predict_scores(X)
        return predict_labels(s, self.decision_, self.thresholds_, self.levels_)

    def evaluate(self, X, y) -> dict:
        """Micro/macro F1 (overall, per level), hit@k, AU(PRC) on ``(X, y)``
        (:func:`~conehier.training.joint.classification_metrics`)."""
        self._check_fitted()
        Y, _ = labels_to_matrix(y, self.hierarchy_)
        s = self.predict_scores(X)
        if len(Y) != len(s):
            raise ValueError(f"X has {len(s)} samples but y has {len(Y)}")
        pred = predict_labels(s, self.decision_, self.thresholds_, self.levels_)
        return classification_metrics(Y, s, pred, self.levels_, self.eval_mask_)

    def score(self, X, y) -> float:
        """Micro-F1 of the predicted label sets (:meth:`predict_label_matrix`) over the evaluated nodes."""
        return float(self.evaluate(X, y)["micro_f1"])
