"""Every published-table file is validated here: one generated test per file (and per cell)."""

import json

import pytest

from conehier.experiments import Table, list_tables, load_table, table_files
from conehier.models.embedding import GEOMETRIES
from conehier.pipeline import make_config
from conehier.training.config import EmbedConfig

FILES = table_files()
CELLS = [(p.stem, c["id"]) for p in FILES for c in json.loads(p.read_text(encoding="utf-8"))["cells"]]
PUBLISHED_SPLITS = (0, 10, 25, 50, 90)  # WordNet split files


def test_the_published_tables_are_shipped():
    assert {p.stem for p in FILES} >= {"hyperbolic-cones-wordnet", "ethec-link-prediction", "ethec-reconstruction"}
    sizes = {t.name: len(t.cells) for t in list_tables()}
    assert sizes["hyperbolic-cones-wordnet"] == 32  # 4 models x 2 dims x 4 shares
    assert sizes["ethec-link-prediction"] == 10  # 2 models x 5 dims
    assert sizes["ethec-reconstruction"] == 9  # 3 models x 3 dims


def test_table_names_are_unique_and_match_their_files():
    names = [json.loads(p.read_text(encoding="utf-8"))["name"] for p in FILES]
    assert len(set(names)) == len(names)
    assert names == [p.stem for p in FILES]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_table_file_is_valid(path):
    t = Table.load(path)  # validates: cells complete, ids unique, configs load
    assert t.name == path.stem and t.description and t.reference.get("citation") and t.reference.get("table")
    ids = [c.id for c in t.cells]
    assert len(set(ids)) == len(ids)
    for c in t.cells:
        assert c.model in GEOMETRIES
        assert set(c.paper) == {m.name for m in t.metrics}
        for m in t.metrics:
            hi = 100 if m.scale == 100 else 1
            assert 0 <= c.paper[m.name] <= hi, (c.id, m.name)
        if t.hierarchy.startswith("wordnet-"):
            assert c.train_percent in PUBLISHED_SPLITS
        assert (c.row, c.col) != ("", "")


@pytest.mark.parametrize("table,cell", CELLS, ids=[f"{t}:{c}" for t, c in CELLS])
def test_cell_config_loads(table, cell):
    t = load_table(table)
    c = t.cell(cell)
    cfg = t.config(c)
    assert isinstance(cfg, EmbedConfig) and cfg.model.geometry == c.model and cfg.model.dim == c.dim
    # the file's fields go through make_config unchanged, and the config survives a JSON round trip
    direct = make_config(c.model, c.dim, **t.overrides(c))
    assert direct.model == cfg.model and direct.train == cfg.train
    assert EmbedConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    quick = t.config(c, quick=True)
    assert quick.train.epochs < cfg.train.epochs and quick.model == cfg.model
    # the protocol decides the numbers: machine fields are not part of it
    assert t.protocol(c) == t.protocol(c) and "device" not in t.protocol(c)["config"]["train"]
    assert t.config(c, device="cpu", threads=1).train.device == "cpu"


def test_paper_numbers_are_as_published():
    t = load_table("hyperbolic-cones-wordnet")
    assert t.cell("hyperbolic-cones-10-50").paper == {"test_f1": 94.4}
    assert t.cell("poincare-5-0").paper == {"test_f1": 29.4}
    noted = sorted(c.id for c in t.cells if c.paper_note)
    assert noted == ["order-5-10", "poincare-10-0", "poincare-10-10", "poincare-10-25", "poincare-10-50"]
    e = load_table("ethec-link-prediction")
    assert e.cell("euclidean-cones-3").paper == {"test_f1": 0.9979} and e.cell("order-2").train_percent == 50
    r = load_table("ethec-reconstruction")
    assert r.cell("hyperbolic-cones-1000").paper == {"tpr": 0.9721, "tnr": 0.9986, "f1": 0.8257}
    assert [m.source for m in r.metrics] == ["reconstruction.tpr", "reconstruction.tnr", "reconstruction.f1"]


def test_thesis_protocols_are_encoded():
    r = load_table("ethec-reconstruction")
    hc, oe = r.config(r.cell("hyperbolic-cones-100")), r.config(r.cell("order-2"))
    assert r.eval == {"reconstruction": True, "reconstruction_positives": "basic"}
    assert hc.eval.reconstruction is True and hc.eval.reconstruction_positives == "basic"
    assert (hc.train.optimizer, hc.train.lr, hc.train.batch_size, hc.model.parametrization) == ("rsgd", 0.001, 100, "ball")
    assert (oe.train.optimizer, oe.train.lr, oe.train.batch_size) == ("adam", 0.1, 10)
    assert hc.train.epochs == oe.train.epochs == 5000 and hc.train.margin == oe.train.margin == 0.1
    lp = load_table("ethec-link-prediction")
    o, ec = lp.config(lp.cell("order-5")), lp.config(lp.cell("euclidean-cones-5"))
    assert (o.train.epochs, o.train.batch_size, o.train.lr, o.train.margin, ec.train.margin) == (200, 10, 0.1, 1.0, 0.01)
    w = load_table("hyperbolic-cones-wordnet")
    h = w.config(w.cell("hyperbolic-cones-5-0"))
    assert h.train.optimizer == "row-adam" and h.model.parametrization == "exp0" and h.train.batch_size == 512
    assert (h.train.init, h.train.init_epochs, h.train.init_optimizer) == ("poincare", 100, "row-rsgd")
    assert h.train.epochs == 300  # 0% and 10% cells: the paper's 100 Poincaré + 300 cone epochs
    h25 = w.config(w.cell("hyperbolic-cones-10-25"))
    assert (h25.train.init_epochs, h25.train.epochs) == (30, 200)


def test_ethec_reconstruction_pair_counts(data_root):
    """717 basic edges of 723 labels; 723 * 722 - 717 = 521,289 negatives (the thesis's count)."""
    from conehier.data.registry import load_spec

    h = load_spec("ethec", data_root).hierarchy
    assert h.n == 723 and len(h.transitive_reduction()) == 717 and len(h.non_basic_edges()) == 1257
    assert h.n * (h.n - 1) - 717 == 521_289


# ---------------------------------------------------------------- bad files
def _toy(**changes):
    d = {
        "name": "toy", "description": "a toy table", "hierarchy": "toy:2,3", "train_percent": 50,
        "metrics": [{"name": "test_f1", "source": "test_f1"}],
        "defaults": {"epochs": 3}, "quick": {"epochs": 1},
        "cells": [{"id": "order-2", "model": "order", "dim": 2, "paper": {"test_f1": 0.5}},
                  {"id": "euclidean-cones-2", "model": "euclidean-cones", "dim": 2, "paper": {"test_f1": 0.6}}],
    }
    d.update(changes)
    return d


def test_a_good_toy_table_loads():
    t = Table.from_dict(_toy())
    assert [c.id for c in t.cells] == ["order-2", "euclidean-cones-2"] and t.cells[0].train_percent == 50
    assert [c.id for c in t.select("euclidean-*")] == ["euclidean-cones-2"]
    assert [c.id for c in t.select(["euclidean-cones-2,order-2"])] == ["order-2", "euclidean-cones-2"]


@pytest.mark.parametrize("change,match", [
    ({"cells": [{"id": "a", "model": "order", "dim": 2, "paper": {"test_f1": 1}}] * 2}, "duplicate cell id"),
    ({"cells": [{"id": "a", "model": "order", "dim": 2, "paper": {}}]}, "no paper number for test_f1"),
    ({"cells": [{"id": "a", "model": "order", "dim": 2, "paper": {"test_f1": None}}]}, "no paper number"),
    ({"cells": [{"id": "a", "model": "order", "dim": 2, "paper": {"test_f1": 1, "tpr": 1}}]}, "unknown metric"),
    ({"cells": [{"id": "a", "model": "cones", "dim": 2, "paper": {"test_f1": 1}}]}, "unknown model"),
    ({"cells": [{"id": "a", "model": "order", "dim": 2, "config": {"epoch": 3}, "paper": {"test_f1": 1}}]},
     "unknown option 'epoch'"),
    ({"cells": [{"id": "a,b", "model": "order", "dim": 2, "paper": {"test_f1": 1}}]}, "bad cell id"),
    ({"defaults": {"lr": 0.1, "optimiser": "adam"}}, "unknown option 'optimiser'"),
    ({"quick": {"epochz": 1}}, r"\(quick\)"),
    ({"eval": {"positives": "basic"}}, "unknown EvalConfig option"),
    ({"colour": "red"}, "unknown key"),
    ({"eval": {"reconstruction_positives": "all"}}, "must be 'basic', 'closure' or 'both'"),
    ({"metrics": [{"name": "f1", "source": "reconstruction_closure.f1"}],
      "cells": [{"id": "a", "model": "order", "dim": 2, "paper": {"f1": 1}}]}, "reads reconstruction_closure"),
    ({"eval": {"reconstruction": False}, "metrics": [{"name": "f1", "source": "reconstruction.f1"}],
      "cells": [{"id": "a", "model": "order", "dim": 2, "paper": {"f1": 1}}]}, "eval.reconstruction is false"),
    ({"metrics": []}, "no metrics"),
    ({"cells": []}, "no cells"),
])
def test_bad_tables_are_rejected(change, match):
    with pytest.raises(ValueError, match=match):
        Table.from_dict(_toy(**change))


def test_missing_keys_and_unknown_names():
    d = _toy()
    del d["hierarchy"]
    with pytest.raises(ValueError, match="missing 'hierarchy'"):
        Table.from_dict(d)
    with pytest.raises(LookupError, match="did you mean ethec-link-prediction"):
        load_table("ethec-link-predictoin")
    with pytest.raises(LookupError, match="no cell 'order-7'"):
        load_table("ethec-link-prediction").select("order-7")
    with pytest.raises(FileNotFoundError):
        load_table("no/such/table.json")


def test_a_table_file_by_path(tmp_path):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(_toy(name="mine")))
    assert load_table(str(p)).name == "mine"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_table(str(p))
