"""``conehier demo``: the main job on a built-in default, with no download."""

from __future__ import annotations


def run_demo(out: str = "conehier-demo", seed: int = 0, epochs: int | None = None) -> int:
    from .data.builtin import cifar10_hierarchy

    h = cifar10_hierarchy()
    print(f"built-in hierarchy: {h!r}")
    for k, v in h.stats().items():
        print(f"  {k}: {v}")
    return 0
