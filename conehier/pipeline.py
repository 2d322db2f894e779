"""``conehier.embed``: split -> model -> training -> evaluation -> a result that saves itself.

>>> from conehier import embed
>>> result = embed("wordnet-mammal", model="hyperbolic-cones", dim=5, train_percent=50)
>>> result.metrics["test_f1"], result.save("runs/mammal")
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .evaluation.protocols import evaluate_link_prediction, pair_matrix, reconstruction
from .hierarchy.graph import Hierarchy
from .hierarchy.splits import EdgeSplit, split_edges
from .models.embedding import GEOMETRIES, EmbeddingModel
from .sampling import NegativeSampler, degree_weights
from .training.config import GEOMETRY_DEFAULTS, EmbedConfig, EvalConfig, ModelConfig, TrainConfig
from .training.trainer import EmbeddingTrainer, resolve_device

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class EmbedResult:
    """Embeddings, metrics and training curve of one run."""

    config: EmbedConfig
    names: list[str]
    edges: np.ndarray  # the hierarchy's (parent, child) ids
    embeddings: np.ndarray  # (n, d) points in the model's space (ball points for ball geometries)
    metrics: dict
    history: list = field(default_factory=list)
    spec: str | None = None

    @property
    def hierarchy(self) -> Hierarchy:
        return Hierarchy(self.names, self.edges, name=self.spec)

    def model(self, device=None) -> EmbeddingModel:
        """A model holding the (best-epoch) embeddings."""
        m = _build_model(self.config.model, len(self.names), device or "cpu")
        return m.set_points_(torch.as_tensor(self.embeddings))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``embeddings.npy``, ``names.txt``, ``edges.tsv``, ``metrics.json``, ``history.json``, ``config.json``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "embeddings.npy", self.embeddings)
        (d / "names.txt").write_text("\n".join(self.names) + "\n", encoding="utf-8")
        np.savetxt(d / "edges.tsv", self.edges, fmt="%d", delimiter="\t")
        (d / "metrics.json").write_text(json.dumps(self.metrics, indent=2))
        (d / "history.json").write_text(json.dumps(self.history))
        (d / "config.json").write_text(json.dumps({"spec": self.spec, **self.config.to_dict()}, indent=2))
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "EmbedResult":
        d = Path(directory)
        if not (d / "embeddings.npy").is_file():
            raise FileNotFoundError(f"no saved embedding run in {d} (embeddings.npy missing)")
        cfg = json.loads((d / "config.json").read_text())
        spec = cfg.pop("spec", None)
        names = (d / "names.txt").read_text(encoding="utf-8").splitlines()
        edges = np.loadtxt(d / "edges.tsv", dtype=np.int64, ndmin=2, delimiter="\t").reshape(-1, 2)
        return cls(
            config=EmbedConfig.from_dict(cfg),
            names=names,
            edges=edges,
            embeddings=np.load(d / "embeddings.npy"),
            metrics=json.loads((d / "metrics.json").read_text()),
            history=json.loads((d / "history.json").read_text()),
            spec=spec,
        )


def _build_model(cfg: ModelConfig, n: int, device) -> EmbeddingModel:
    if cfg.dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {cfg.dtype!r}")
    return EmbeddingModel(
        n,
        cfg.dim,
        cfg.geometry,
        K=cfg.K,
        alpha=cfg.alpha,
        squared=cfg.squared,
        parametrization=cfg.parametrization,
        dtype=_DTYPES[cfg.dtype],
    ).to(device)


def make_config(model: str = "hyperbolic-cones", dim: int = 10, **overrides) -> EmbedConfig:
    """An :class:`EmbedConfig` with the geometry's defaults and ``overrides`` (train or model fields)."""
    if model not in GEOMETRIES:
        raise ValueError(f"unknown model {model!r}; choose one of {GEOMETRIES}")
    mfields = set(ModelConfig.__dataclass_fields__)
    tfields = set(TrainConfig.__dataclass_fields__)
    efields = set(EvalConfig.__dataclass_fields__)
    ekw: dict = {}
    train = dict(GEOMETRY_DEFAULTS.get(model, {}))
    mkw = {"geometry": model, "dim": dim}
    if model in ("hyperbolic-cones", "poincare") and (overrides.get("optimizer") or train.get("optimizer")) in (
        "adam", "row-adam", "sgd"
    ):
        mkw["parametrization"] = "exp0"  # Adam needs Euclidean parameters
    for k, v in overrides.items():
        if v is None:
            continue
        if k in mfields:
            mkw[k] = v
        elif k in tfields:
            train[k] = v
        elif k in efields:
            ekw[k] = v
        else:
            raise ValueError(f"unknown option {k!r} (not a ModelConfig, TrainConfig or EvalConfig field)")
    return EmbedConfig(model=ModelConfig(**mkw), train=TrainConfig(**train), eval=EvalConfig(**ekw))


def resolve_hierarchy_and_split(
    hierarchy, *, train_percent: float = 0, data_dir=None, seed: int = 0, valid_percent: float = 5, test_percent: float = 5
) -> tuple[Hierarchy, EdgeSplit, str | None]:
    """A Hierarchy (or SPEC string) and its split: the published one for WordNet specs."""
    spec = None
    if isinstance(hierarchy, str):
        from .data.registry import load_spec

        spec = hierarchy
        loaded = load_spec(hierarchy, data_dir)
        if spec.startswith("wordnet-"):
            return loaded.hierarchy, loaded.source.split(int(train_percent)), spec
        hierarchy = loaded.hierarchy
    if not isinstance(hierarchy, Hierarchy):
        raise TypeError(f"expected a Hierarchy or a SPEC string, got {type(hierarchy).__name__}")
    split = split_edges(
        hierarchy, valid_percent=valid_percent, test_percent=test_percent, train_percent=train_percent, seed=seed
    )
    return hierarchy, split, spec or hierarchy.name


#: Nickel & Kiela's is-a score weights tried for Poincaré embeddings (chosen on validation)
POINCARE_ALPHAS = (0.0, 0.1, 1.0, 10.0, 100.0, 1000.0)


def link_eval(model: EmbeddingModel, split: EdgeSplit, device=None, rule: str = "edge") -> dict:
    """Link prediction of ``model`` on ``split`` (``rule``: the threshold rule); for Poincaré
    embeddings the is-a score's ``alpha`` is also chosen on validation (reported as ``alpha``)."""
    if model.geometry != "poincare":
        return evaluate_link_prediction(model.is_a_energy, split, device=device, rule=rule)
    best = None
    keep = model.alpha
    try:
        for a in POINCARE_ALPHAS:
            model.alpha = a
            r = evaluate_link_prediction(model.is_a_energy, split, device=device, rule=rule)
            if best is None or r["valid_f1"] > best["valid_f1"]:
                best = {**r, "alpha": a}
    finally:
        model.alpha = keep
    return best


def _train(
    hierarchy: Hierarchy,
    split: EdgeSplit,
    cfg: EmbedConfig,
    device,
    *,
    init_points: torch.Tensor | None,
    checkpoint_dir,
    progress: bool,
    desc: str,
) -> tuple[EmbeddingModel, EmbeddingTrainer]:
    t = cfg.train
    model = _build_model(cfg.model, hierarchy.n, device)
    gen = torch.Generator().manual_seed(t.seed)
    if init_points is not None:
        model.set_points_(init_points.to(model.weight.dtype))
    else:
        model.init_random_(gen, scale=t.init_scale)
    train_h = Hierarchy(hierarchy.names, split.train)  # negatives avoid the closure of what training sees
    sampler = NegativeSampler(
        train_h,
        k_parent=t.k_parent,
        k_child=t.k_child,
        per_level=t.per_level,
        levels=hierarchy.depth if t.per_level else None,
        weights=degree_weights(split.train, hierarchy.n, t.neg_power) if t.neg_power else None,
        device=device,
    )
    trainer = EmbeddingTrainer(
        model,
        split.train,
        sampler,
        t,
        evaluate=lambda m: link_eval(m, split, device=device, rule=cfg.eval.threshold),
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        desc=desc,
    )
    trainer.fit(resume=True)
    trainer.restore_best()
    return model, trainer


def embed(
    hierarchy,
    model: str = "hyperbolic-cones",
    dim: int = 10,
    *,
    train_percent: float = 0,
    config: EmbedConfig | None = None,
    data_dir=None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    **overrides,
) -> EmbedResult:
    """Train and evaluate an embedding of ``hierarchy`` (a Hierarchy or a SPEC string).

    ``overrides`` set :class:`TrainConfig` / :class:`ModelConfig` fields (``epochs``,
    ``lr``, ``batch_size``, ``seed``, ``K``, ...). With ``out`` the run checkpoints to
    ``out/checkpoints`` (an interrupted run resumes there) and saves its result.
    Metrics: link prediction at the epoch of best validation F1 (``test_f1``,
    ``valid_f1``, ``best_epoch``, ...), graph reconstruction for small hierarchies,
    and ``wall_seconds``.
    """
    t0 = time.perf_counter()
    cfg = config or make_config(model, dim, **overrides)
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)
    h, split, spec = resolve_hierarchy_and_split(hierarchy, train_percent=train_percent, data_dir=data_dir, seed=t.seed)
    ckpt = Path(out) / "checkpoints" if out else None
    init_points, init_metrics = None, None
    if t.init == "poincare" and cfg.model.geometry != "poincare":
        pre = EmbedConfig(
            model=ModelConfig(geometry="poincare", dim=cfg.model.dim, dtype=cfg.model.dtype),
            train=TrainConfig(
                **{
                    **t.to_dict(),
                    "epochs": t.init_epochs,
                    "lr": t.init_lr,
                    "optimizer": t.init_optimizer,
                    "batch_size": t.init_batch_size or t.batch_size,
                    "burn_in_epochs": t.init_burn_in_epochs,
                    "init": "random",
                    "neg_power": t.init_neg_power,
                }
            ),
        )
        pm, ptrainer = _train(h, split, pre, device, init_points=None, checkpoint_dir=ckpt / "init" if ckpt else None,
                              progress=progress, desc="poincare init")
        init_points = pm.points().detach() * t.init_rescale
        init_metrics = ptrainer.state.best
    elif t.init not in ("random", "poincare"):
        raise ValueError(f"init must be 'random' or 'poincare', got {t.init!r}")
    m, trainer = _train(h, split, cfg, device, init_points=init_points, checkpoint_dir=ckpt, progress=progress,
                        desc=cfg.model.geometry)
    best = trainer.state.best or {"epoch": trainer.state.epoch, "metrics": {}}
    metrics = {k: v for k, v in best["metrics"].items()}
    metrics["best_epoch"] = best["epoch"]
    metrics["epochs"] = trainer.state.epoch
    metrics["train_seconds"] = trainer.state.wall_seconds
    metrics["seconds_per_epoch"] = trainer.state.wall_seconds / max(len(trainer.state.history), 1)
    if init_metrics is not None:
        metrics["init"] = {"best_epoch": init_metrics["epoch"], **init_metrics["metrics"]}
    ev = cfg.eval
    if ev.reconstruction or (ev.reconstruction is None and h.n <= ev.max_reconstruction_nodes):
        kinds = ("basic", "closure") if ev.reconstruction_positives == "both" else (ev.reconstruction_positives,)
        max_nodes = max(h.n, ev.max_reconstruction_nodes)
        lams = ev.distance_weights()
        chunk = max(4096, (1 << 24) // cfg.model.dim)
        E = pair_matrix(m.is_a_energy, h.n, chunk_pairs=chunk, device=device)  # scored once for every kind and lambda
        D = pair_matrix(m.distance, h.n, chunk_pairs=chunk, device=device) if any(lams) else None
        for i, kind in enumerate(kinds):
            best = None
            for lam in lams:  # chosen by F1 on the pairs, as the threshold is
                r = reconstruction(E + lam * D if lam else E, h, positives=kind, max_nodes=max_nodes)
                r["distance_weight"] = float(lam)
                if best is None or r["f1"] > best["f1"]:
                    best = r
            metrics["reconstruction" if i == 0 else f"reconstruction_{kind}"] = best
    metrics["train_sizes"] = split.sizes()
    metrics["device"] = str(device)
    metrics["wall_seconds"] = time.perf_counter() - t0
    result = EmbedResult(
        config=cfg,
        names=h.names,
        edges=h.edges,
        embeddings=m.points().detach().cpu().numpy(),
        metrics=metrics,
        history=trainer.state.history,
        spec=spec,
    )
    if out:
        result.save(out)
    return result
