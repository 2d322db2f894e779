"""Plain-JSON conversion of results (metrics dicts, configs, histories)."""

from __future__ import annotations

import math


def to_jsonable(x):
    """``x`` with numpy / torch scalars and arrays turned into Python numbers and lists,
    dict keys into strings, and non-finite floats into ``None`` (NaN) or ``"inf"`` / ``"-inf"``,
    so that ``json.dumps`` writes standard JSON."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if hasattr(x, "tolist") and callable(x.tolist):  # numpy arrays and scalars, torch tensors
        return to_jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x
