"""Shared fixtures. Real-data tests read ``$CONEHIER_DATA``; with ``CI=true`` missing data fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _data_root() -> Path | None:
    env = os.environ.get("CONEHIER_DATA")
    if env:
        return Path(env)
    guess = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return guess if guess.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root of the shared reference data; skips locally, fails under CI=true, when missing."""
    root = _data_root()
    if root is None or not root.is_dir():
        msg = "shared reference data not found: set CONEHIER_DATA to the folder holding wordnet/, ethec/, hmc/"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch, tmp_path_factory):
    """Tests never touch the network nor the user's cache."""
    monkeypatch.setenv("CONEHIER_OFFLINE", "1")
    monkeypatch.setenv("CONEHIER_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
