"""CNN backbones (torchvision) as penultimate-layer feature extractors, and image transforms.

:func:`build_backbone` returns ``(module, D)``: the module maps images
``(B, 3, H, W)`` (float, ImageNet-normalised, see :func:`image_transforms`) to
features ``(B, D)``:

=========  ====  ===============================================
name        D    features
=========  ====  ===============================================
alexnet    4096  fc7 (after its ReLU), the last linear layer removed
vgg16      4096  fc7 (after its ReLU and dropout)
resnet18    512  global average pool (``fc`` removed)
resnet50   2048  global average pool
resnet101  2048  global average pool
resnet152  2048  global average pool
=========  ====  ===============================================

Weights
-------
``weights="imagenet"`` loads torchvision's ``IMAGENET1K_V1`` weights (the
original ImageNet training the thesis used) from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``; :func:`weights_path` says where). When the
file is missing it is downloaded, unless ``$CONEHIER_OFFLINE`` is set; if it
cannot be had, :class:`WeightsUnavailableError` says which file to put where
-- random initialisation happens only with ``allow_random=True`` (a warning
says so). ``weights=None`` (or ``"random"``) asks for random initialisation
(seeded by the caller's torch RNG); another torchvision enum name
(``"IMAGENET1K_V2"``) or a path to a saved ``state_dict`` works as well.

Fine-tuning: :meth:`Backbone.freeze` stops gradients and keeps batch-norm
statistics fixed (the module stays in eval mode), for training the last layer
(the head) only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "BACKBONES",
    "FEATURE_DIMS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "WeightsUnavailableError",
    "build_backbone",
    "image_transforms",
    "weights_path",
]

BACKBONES = ("alexnet", "vgg16", "resnet18", "resnet50", "resnet101", "resnet152")
FEATURE_DIMS = {"alexnet": 4096, "vgg16": 4096, "resnet18": 512, "resnet50": 2048, "resnet101": 2048,
                "resnet152": 2048}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGENET_ENUM = "IMAGENET1K_V1"


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights are neither cached nor downloadable, and random initialisation was not allowed."""


def _check_name(name: str) -> str:
    n = str(name).lower().replace("-", "").replace("_", "")
    if n not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return n


def _weights_enum(name: str, weights: str):
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    key = _IMAGENET_ENUM if weights.lower() == "imagenet" else weights
    try:
        return enum[key]
    except KeyError:
        raise ValueError(f"backbone {name!r} has no weights {weights!r}; choose 'imagenet', "
                         f"{', '.join(w.name for w in enum)}, None (random) or a state_dict file") from None


def weights_path(name: str, weights: str = "imagenet") -> Path:
    """Where torch hub caches the pretrained ``weights`` of backbone ``name``."""
    w = _weights_enum(_check_name(name), weights)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)


def _offline() -> bool:
    return os.environ.get("CONEHIER_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


class Backbone(nn.Module):
    """A torchvision CNN with its classification layer removed: ``(B, 3, H, W) -> (B, D)``.

    ``name``, ``out_features`` (D) and ``weights`` (what initialised it: e.g.
    ``"imagenet:IMAGENET1K_V1"``, ``"random"``, ``"file:PATH"``) describe it.
    """

    def __init__(self, name: str, net: nn.Module, out_features: int, weights: str):
        super().__init__()
        self.name, self.net, self.out_features, self.weights = name, net, int(out_features), weights
        self.frozen = False

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} expects images of shape (B, 3, H, W), got {tuple(x.shape)}")
        return self.net(x).flatten(1)

    def freeze(self) -> "Backbone":
        """No gradients for the backbone, batch-norm statistics fixed (eval mode from now on)."""
        self.frozen = True
        self.requires_grad_(False)
        self.net.eval()
        return self

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if self.frozen:
            self.net.eval()
        return self

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_features={self.out_features}, weights={self.weights!r}, frozen={self.frozen}"


def _strip_classifier(name: str, model: nn.Module) -> nn.Module:
    if name.startswith("resnet"):
        model.fc = nn.Identity()
    else:  # alexnet, vgg16: drop the last Linear of the classifier -> fc7 features
        model.classifier[-1] = nn.Identity()
    return model


def build_backbone(name: str, *, weights: str | None = "imagenet", allow_random: bool = False) -> tuple[nn.Module, int]:
    """``(feature extractor, D)`` for a torchvision backbone (module docs for names, weights, D).

    Raises :class:`WeightsUnavailableError` when ImageNet weights are neither
    in the torch hub cache nor downloadable (or ``$CONEHIER_OFFLINE`` is set)
    and ``allow_random`` is false; with ``allow_random`` it warns and
    initialises randomly. Random initialisation uses the global torch RNG
    (seed it for reproducible weights).
    """
    import torchvision

    n = _check_name(name)
    ctor = getattr(torchvision.models, n)
    label = "random"
    state = None
    if weights is None or str(weights).lower() in ("random", "none"):
        model = ctor(weights=None)
    elif Path(str(weights)).suffix in (".pth", ".pt") or Path(str(weights)).is_file():
        p = Path(weights)
        if not p.is_file():
            raise WeightsUnavailableError(f"weights file {p} for backbone {n!r} does not exist")
        model = ctor(weights=None)
        state = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        label = f"file:{p.name}"
    else:
        enum = _weights_enum(n, str(weights))
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
        problem = None
        if path.is_file() or not _offline():
            try:
                state = enum.get_state_dict(progress=False, check_hash=False)
                label = f"imagenet:{enum.name}"
            except Exception as exc:  # download failed: no network, proxy, disk ...
                problem = f"{type(exc).__name__}: {exc}"
        else:
            problem = "offline ($CONEHIER_OFFLINE is set), no download attempted"
        if problem is not None:
            msg = (f"ImageNet weights {enum.name} for {n} are not in the torch hub cache ({path}) and could not "
                   f"be downloaded ({problem}). Download {enum.url} into {path.parent} (or set $TORCH_HOME to "
                   f"where the weights are), or ask for random initialisation (allow_random=True, "
                   f"CLI --random-init).")
            if not allow_random:
                raise WeightsUnavailableError(msg)
            warnings.warn(msg + " Using random initialisation.", RuntimeWarning, stacklevel=2)
        model = ctor(weights=None)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"weights {weights!r} do not fit backbone {n!r}: {exc}") from None
    net = _strip_classifier(n, model)
    return Backbone(n, net, FEATURE_DIMS[n], label), FEATURE_DIMS[n]


def image_transforms(train: bool, *, resize: int = 448, crop: int = 224) -> Callable:
    """PIL image -> normalised float tensor ``(3, crop, crop)``.

    Evaluation: resize the shorter side to ``resize``, centre-crop
    ``resize x resize`` (the thesis' 448 x 448 specimen images), resize to
    ``crop x crop`` (224), ``ToTensor``, ImageNet mean/std normalisation.
    Training adds the standard augmentations: after the centre crop a
    ``RandomResizedCrop(crop, scale=(0.64, 1))``, a horizontal flip with
    probability 1/2 and a mild colour jitter (0.1 brightness/contrast/saturation).
    Random draws use the torch RNG (seeded by the DataLoader's generator in workers).
    """
    from torchvision import transforms as T

    if resize < 1 or crop < 1 or crop > resize:
        raise ValueError(f"need 1 <= crop <= resize, got resize={resize}, crop={crop}")
    head = [T.Resize(resize), T.CenterCrop(resize)]
    tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        mid = [T.RandomResizedCrop(crop, scale=(0.64, 1.0)), T.RandomHorizontalFlip(),
               T.ColorJitter(0.1, 0.1, 0.1)]
    else:
        mid = [T.Resize((crop, crop))]
    return T.Compose(head + mid + tail)
