"""Small config objects, one per stage of the embedding pipeline."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


class ConfigBase:
    """``to_dict`` / ``from_dict`` for the config dataclasses (unknown keys are an error)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None):
        if d is None:
            return cls()
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} option(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class ModelConfig(ConfigBase):
    """What is embedded and how it is scored (see :class:`EmbeddingModel`)."""

    geometry: str = "hyperbolic-cones"
    dim: int = 10
    K: float = 0.1
    alpha: float = 1000.0
    squared: bool = False
    parametrization: str = "ball"
    dtype: str = "float32"


@dataclass
class TrainConfig(ConfigBase):
    """How the embedding is trained.

    ``lr`` is per summed-loss unit (the loss sums over pairs, as the thesis's eq.
    2.3), so the movement per epoch hardly depends on ``batch_size``.
    ``optimizer``: ``rsgd`` / ``radam`` (geoopt, ball parameters), ``adam`` / ``sgd``.
    ``burn_in_epochs`` run at ``lr * burn_in_factor``. ``init`` is ``"random"`` or
    ``"poincare"`` (pre-train Poincaré embeddings with ``init_*`` settings, then scale
    them by ``init_rescale``).
    """

    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-3
    optimizer: str = "adam"
    margin: float = 0.01
    loss_reduction: str = "sum"
    k_parent: int = 5
    k_child: int = 5
    per_level: bool = False
    neg_power: float = 0.0  # corrupt with nodes drawn ~ degree ** neg_power (0: uniform)
    burn_in_epochs: int = 0
    burn_in_factor: float = 0.1
    schedule: str = "constant"  # after burn-in: "constant", "cosine" or "linear" decay to lr * final_lr_factor
    final_lr_factor: float = 0.0
    init: str = "random"
    init_scale: float = 1e-3
    init_epochs: int = 100
    init_lr: float = 0.03
    init_burn_in_epochs: int = 20
    init_rescale: float = 0.7
    init_neg_power: float = 0.75
    init_optimizer: str = "rsgd"  # "row-rsgd" updates only the rows a batch touches (faster on large tables)
    init_batch_size: int | None = None  # default: batch_size
    eval_every: int = 10
    seed: int = 0
    device: str | None = None
    threads: int | None = None


@dataclass
class EvalConfig(ConfigBase):
    """Which protocols run after training, and how link prediction picks its threshold."""

    #: where in the gap of validation-F1-optimal energies the threshold goes: "edge" (the
    #: largest accepted validation energy) or "midpoint" (halfway to the next larger one)
    threshold: str = "edge"
    reconstruction: bool | None = None  # None: only when the hierarchy has <= max_reconstruction_nodes
    #: "basic", "closure", or "both" (basic under ``reconstruction``, closure under ``reconstruction_closure``)
    reconstruction_positives: str = "basic"
    #: lambda in the reconstruction score ``E(u, v) + lambda d(u, v)``: breaks the ties of pairs inside
    #: a cone / orthant (energy 0 for every ancestor) in favour of the nearer, i.e. the parent. A list:
    #: the value with the best F1 is chosen, as the threshold is (reported as ``distance_weight``)
    reconstruction_distance_weight: float | list = 0.0
    max_reconstruction_nodes: int = 5000

    def __post_init__(self):
        if self.reconstruction_positives not in ("basic", "closure", "both"):
            raise ValueError(f"reconstruction_positives must be 'basic', 'closure' or 'both', "
                             f"got {self.reconstruction_positives!r}")
        if self.threshold not in ("edge", "midpoint"):
            raise ValueError(f"threshold must be 'edge' or 'midpoint', got {self.threshold!r}")
        lams = self.distance_weights()
        if not lams or not all(isinstance(x, (int, float)) and x >= 0 for x in lams):
            raise ValueError(f"reconstruction_distance_weight must be >= 0 (a number or a non-empty list), "
                             f"got {self.reconstruction_distance_weight!r}")

    def distance_weights(self) -> list:
        """``reconstruction_distance_weight`` as a list of the values to try."""
        w = self.reconstruction_distance_weight
        return list(w) if isinstance(w, (list, tuple)) else [w]


@dataclass
class EmbedConfig(ConfigBase):
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, d: dict | None):
        d = d or {}
        return cls(
            model=ModelConfig.from_dict(d.get("model")),
            train=TrainConfig.from_dict(d.get("train")),
            eval=EvalConfig.from_dict(d.get("eval")),
        )


#: Defaults per geometry (tuned on the WordNet mammal closure, dim 5, 50% non-basic edges; test F1
#: order 84.2, Euclidean cones 91.7, hyperbolic cones 96.1 with these settings). Row-sparse lazy Adam
#: with cosine decay; hyperbolic cones use the thesis's exp_0 parametrisation (section 6.1.3).
_COMMON = {"optimizer": "row-adam", "lr": 0.01, "schedule": "cosine", "batch_size": 32, "epochs": 200}
GEOMETRY_DEFAULTS: dict[str, dict] = {
    "order": {**_COMMON, "margin": 1.0},
    "euclidean-cones": {**_COMMON, "margin": 0.01},
    "euclidean-cones-cosine": {**_COMMON, "margin": 0.01},
    "hyperbolic-cones": {**_COMMON, "margin": 0.01},
    "poincare": {**_COMMON},
}
