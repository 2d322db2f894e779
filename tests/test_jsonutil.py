import json
import math

import numpy as np
import torch

from conehier.jsonutil import to_jsonable


def test_to_jsonable_converts_numpy_torch_and_non_finite():
    x = {1: np.float32(0.5), "a": (np.int64(3), [np.arange(3)]), "t": torch.tensor([1.5, 2.0]),
         "s": torch.tensor(7), "nan": float("nan"), "inf": np.float64(math.inf), "ninf": -math.inf, "k": "v"}
    y = to_jsonable(x)
    assert y == {"1": 0.5, "a": [3, [[0, 1, 2]]], "t": [1.5, 2.0], "s": 7, "nan": None, "inf": "inf",
                 "ninf": "-inf", "k": "v"}
    json.loads(json.dumps(y, allow_nan=False))  # standard JSON
    assert type(y["a"][0]) is int and type(y["1"]) is float
