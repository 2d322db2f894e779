"""``conehier reproduce`` / ``conehier list`` and the README results script, on tiny tables."""

import importlib.util
import json
from pathlib import Path

import pytest

from conehier.experiments import runner
from conehier.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _toy_table(path: Path, **changes) -> Path:
    d = {
        "name": "toy", "description": "order embeddings and Euclidean cones of a toy tree",
        "reference": {"citation": "nobody", "table": "Table 0"}, "notes": ["a test table"],
        "hierarchy": "toy:2,3", "train_percent": 50,
        "metrics": [{"name": "test_f1", "source": "test_f1", "label": "F1", "scale": 100, "digits": 1},
                    {"name": "f1", "source": "reconstruction.f1", "label": "rec F1"}],
        "defaults": {"epochs": 4, "batch_size": 8, "lr": 0.05, "eval_every": 2, "threads": 1},
        "quick": {"epochs": 2},
        "cells": [
            {"id": "order-2", "model": "order", "dim": 2, "row": "OE", "col": "d=2",
             "paper": {"test_f1": 50.0, "f1": 0.5}},
            {"id": "euclidean-cones-2", "model": "euclidean-cones", "dim": 2, "row": "EC", "col": "d=2",
             "paper": {"test_f1": 60.0, "f1": 0.6}, "paper_note": "from a blog post"},
        ],
    }
    d.update(changes)
    path.write_text(json.dumps(d))
    return path


def _run(capsys, *argv):
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_list(capsys):
    code, out, _ = _run(capsys, "list")
    assert code == 0
    for name, n in (("hyperbolic-cones-wordnet", 32), ("ethec-link-prediction", 10), ("ethec-reconstruction", 9)):
        line = next(x for x in out.splitlines() if x.startswith(name))
        assert f" {n} " in line
    code, out, _ = _run(capsys, "list", "ethec-reconstruction")
    assert code == 0 and "hyperbolic-cones-1000" in out and "0.9721 / 0.9986 / 0.8257" in out and "rsgd" in out
    code, out, _ = _run(capsys, "list", "--json")
    assert {t["name"]: t["cells"] for t in json.loads(out)}["ethec-link-prediction"] == 10


def test_errors_are_clean(capsys, tmp_path):
    code, _, err = _run(capsys, "reproduce", "ethec-link-predictoin")
    assert code == 2 and "did you mean ethec-link-prediction" in err
    code, _, err = _run(capsys, "reproduce", "ethec-link-prediction", "--cell", "order-7", "--out", str(tmp_path))
    assert code == 2 and "no cell 'order-7'" in err
    code, _, err = _run(capsys, "list", "nothing")
    assert code == 2 and "unknown table" in err


def test_dry_run_runs_nothing(capsys, tmp_path):
    code, out, _ = _run(capsys, "reproduce", "hyperbolic-cones-wordnet", "--dry-run", "--cell", "order-5-*",
                        "--out", str(tmp_path / "r"))
    assert code == 0 and out.count(": to run;") == 4 and "order-5-50" in out and "hyperbolic" not in out.split("\n", 1)[1]
    assert not (tmp_path / "r").exists()


def test_reproduce_writes_results_and_resumes(capsys, tmp_path):
    table = _toy_table(tmp_path / "toy.json")
    out = tmp_path / "results" / "toy"
    code, text, _ = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress", "--cell", "order-2")
    assert code == 0 and "rec F1" in text and "not run" in text  # side by side, the other cell listed
    res = json.loads((out / "results.json").read_text())
    assert res["table"] == "toy" and res["quick"] is False
    assert res["paper"] == {"order-2": {"test_f1": 50.0, "f1": 0.5}, "euclidean-cones-2": {"test_f1": 60.0, "f1": 0.6}}
    assert set(res["metrics"]) == {"order-2"}
    ours = res["metrics"]["order-2"]
    raw = res["cells"]["order-2"]["raw_metrics"]
    assert ours["test_f1"] == pytest.approx(100 * raw["test_f1"]) and ours["f1"] == pytest.approx(raw["reconstruction"]["f1"])
    cfg = res["config"]["order-2"]
    assert cfg["model"]["geometry"] == "order" and cfg["train"]["epochs"] == 4 and cfg["train_percent"] == 50
    cell = res["cells"]["order-2"]
    assert cell["wall_seconds"] > 0 and cell["machine"]["label"] and cell["machine"]["torch"]
    assert res["wall_seconds"] == pytest.approx(cell["wall_seconds"])
    assert (out / "cells" / "order-2" / "embeddings.npy").is_file()
    assert not (out / "cells" / "order-2" / "checkpoints").exists()  # removed once the cell is done
    md = (out / "results.md").read_text()
    assert "`order-2`" in md and "| OE | 50.0 · 0.5000 / " in md and "from a blog post" in md

    # a re-run skips what is done and runs the rest
    code, text, _ = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress")
    assert code == 0 and "order-2: done before, skipped" in text and "euclidean-cones-2: euclidean-cones" in text
    res2 = json.loads((out / "results.json").read_text())
    assert set(res2["metrics"]) == {"order-2", "euclidean-cones-2"}
    assert res2["cells"]["order-2"] == res["cells"]["order-2"]

    # --force runs again; a changed configuration runs again by itself
    code, text, _ = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress", "--force",
                         "--cell", "order-2")
    assert code == 0 and "skipped" not in text
    _toy_table(table, defaults={"epochs": 2, "batch_size": 8, "lr": 0.05, "eval_every": 1})
    code, text, _ = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress", "--cell", "order-*")
    assert code == 0 and "skipped" not in text
    assert json.loads((out / "results.json").read_text())["config"]["order-2"]["train"]["epochs"] == 2


def test_an_interrupted_cell_resumes_from_its_checkpoint(capsys, tmp_path):
    table = _toy_table(tmp_path / "toy.json")
    out = tmp_path / "r"
    assert main(["reproduce", str(table), "--out", str(out), "--no-progress", "--cell", "order-2",
                 "--keep-checkpoints"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert (out / "cells" / "order-2" / "checkpoints" / "checkpoint.pt").is_file()
    # as if the process died after training, before the cell was recorded
    res = dict(first, metrics={}, cells={})
    (out / "results.json").write_text(json.dumps(res))
    code, text, _ = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress", "--cell", "order-2")
    again = json.loads((out / "results.json").read_text())
    assert code == 0 and "(resuming)" in text and again["cells"]["order-2"]["resumed"] is True
    assert again["metrics"] == first["metrics"]


def test_two_processes_share_one_output_directory(capsys, tmp_path, monkeypatch):
    """A cell claimed elsewhere is skipped; cells another process records meanwhile are kept."""
    table = _toy_table(tmp_path / "toy.json")
    out = tmp_path / "r"
    with runner._lock(out / "cells" / ".order-2.lock", wait=False) as mine:
        assert mine
        code, text, _ = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress")
    assert code == 0 and "order-2: running in another process, skipped" in text
    res = json.loads((out / "results.json").read_text())
    assert set(res["metrics"]) == {"euclidean-cones-2"}

    # while this process trains order-2, "another" one records a result for euclidean-cones-2
    real_embed = runner.embed
    other = {"test_f1": 12.5, "f1": 0.125}

    def embed_and_meanwhile(*args, **kwargs):
        result = real_embed(*args, **kwargs)
        t = runner.load_table(str(table))
        runner._record(out, t, False, "elsewhere", "euclidean-cones-2", metrics=other, config={"x": 1},
                       cell=dict(res["cells"]["euclidean-cones-2"], finished="later"))
        return result

    monkeypatch.setattr(runner, "embed", embed_and_meanwhile)
    code, text, _ = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress", "--cell", "order-2")
    merged = json.loads((out / "results.json").read_text())
    assert code == 0 and set(merged["metrics"]) == {"order-2", "euclidean-cones-2"}
    assert merged["metrics"]["euclidean-cones-2"] == other and merged["cells"]["euclidean-cones-2"]["finished"] == "later"
    assert "12.5" in (out / "results.md").read_text()


def test_protocols_compare_new_fields_by_their_default():
    a = {"config": {"train": {"epochs": 3, "lr": 0.1}, "eval": {}}, "hierarchy": "ethec"}
    assert runner.same_protocol(a, {"config": {"train": {"epochs": 3, "lr": 0.1}, "eval": {}}, "hierarchy": "ethec"})
    assert not runner.same_protocol(a, {"config": {"train": {"epochs": 4, "lr": 0.1}, "eval": {}}, "hierarchy": "ethec"})
    # a field the stored run predates agrees at its default (the old behaviour), not otherwise
    later = {"config": {"train": {"epochs": 3, "lr": 0.1}, "eval": {"threshold": "edge"}}, "hierarchy": "ethec"}
    assert runner.same_protocol(a, later)
    later["config"]["eval"]["threshold"] = "midpoint"
    assert not runner.same_protocol(a, later)
    unknown = {"config": {"train": {"epochs": 3, "lr": 0.1, "no_such_field": 1}, "eval": {}}, "hierarchy": "ethec"}
    assert not runner.same_protocol(a, unknown)
    assert runner.same_protocol(unknown, a)  # a key only the stored run has is ignored
    assert runner.protocol_defaults()["config"]["eval"]["threshold"] == "edge"


def test_quick_and_full_results_never_mix(capsys, tmp_path):
    table = _toy_table(tmp_path / "toy.json")
    out = tmp_path / "q"
    code, _, _ = _run(capsys, "reproduce", str(table), "--quick", "--out", str(out), "--no-progress", "--cell", "order-2")
    res = json.loads((out / "results.json").read_text())
    assert code == 0 and res["quick"] is True and res["config"]["order-2"]["train"]["epochs"] == 2
    assert "Quick mode" in (out / "results.md").read_text()
    code, _, err = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress")
    assert code == 2 and "holds quick smoke results" in err
    other = _toy_table(tmp_path / "other.json", name="other")
    code, _, err = _run(capsys, "reproduce", str(other), "--quick", "--out", str(out), "--no-progress")
    assert code == 2 and "holds results of table 'toy'" in err
    assert runner.default_out(runner.load_table("ethec-reconstruction"), quick=True) == Path("results/ethec-reconstruction-quick")


def test_a_failed_cell_is_recorded_and_retried(capsys, tmp_path, monkeypatch):
    table = _toy_table(tmp_path / "toy.json")
    out = tmp_path / "r"
    real = runner.embed

    def diverge(*a, **k):
        if k["config"].model.geometry == "order":
            raise FloatingPointError("the loss became nan in epoch 1")
        return real(*a, **k)

    monkeypatch.setattr(runner, "embed", diverge)
    code, _, err = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress")
    res = json.loads((out / "results.json").read_text())
    assert code == 1 and "1 cell(s) failed: order-2" in err
    assert "nan" in res["cells"]["order-2"]["error"] and set(res["metrics"]) == {"euclidean-cones-2"}
    assert "Failed cells" in (out / "results.md").read_text()
    monkeypatch.setattr(runner, "embed", real)
    code, text, _ = _run(capsys, "reproduce", str(table), "--out", str(out), "--no-progress")
    assert code == 0 and "euclidean-cones-2: done before" in text
    assert set(json.loads((out / "results.json").read_text())["metrics"]) == {"order-2", "euclidean-cones-2"}


def test_quick_ethec_reconstruction_cell(capsys, tmp_path, data_root):
    """One real cell, --quick (two epochs of 2-D hyperbolic cones on the ETHEC labels): a few seconds."""
    code, text, _ = _run(capsys, "reproduce", "ethec-reconstruction", "--quick", "--cell", "hyperbolic-cones-2",
                         "--out", str(tmp_path), "--no-progress", "--threads", "1", "--data-dir", str(data_root))
    assert code == 0 and "TPR paper 0.4443" in text
    res = json.loads((tmp_path / "results.json").read_text())
    rec = res["cells"]["hyperbolic-cones-2"]["raw_metrics"]["reconstruction"]
    assert (rec["positives"], rec["n_positive"], rec["n_negative"]) == ("basic", 717, 521_289)
    assert res["metrics"]["hyperbolic-cones-2"] == {"tpr": rec["tpr"], "tnr": rec["tnr"], "f1": rec["f1"]}
    sizes = res["cells"]["hyperbolic-cones-2"]["raw_metrics"]["train_sizes"]
    assert sizes == {"train": 717 + 628, "valid": 62, "test": 62, "valid_neg": 620, "test_neg": 620}


def _readme_script():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_results_section(capsys, tmp_path):
    table = _toy_table(tmp_path / "toy.json")
    root = tmp_path / "results"
    assert main(["reproduce", str(table), "--out", str(root / "toy"), "--no-progress", "--cell", "order-2"]) == 0
    assert main(["reproduce", str(table), "--quick", "--out", str(root / "toy-quick"), "--no-progress"]) == 0
    capsys.readouterr()
    mod = _readme_script()
    assert mod.main([str(root)]) == 0
    md = capsys.readouterr().out
    res = json.loads((root / "toy" / "results.json").read_text())
    ours = res["metrics"]["order-2"]["test_f1"]
    machine = res["cells"]["order-2"]["machine"]["label"]
    assert "### toy" in md and "quick" not in md.split("### toy", 1)[1]
    row = next(x for x in md.splitlines() if x.startswith("| `order-2`"))
    assert "| 50.0 |" in row and f"| {ours:.1f} |" in row and machine in row and " s |" in row
    assert "| `euclidean-cones-2` \\* | 60.0 | not run |" in md and "from a blog post" in md
    assert mod.main([str(root), "--include-quick"]) == 0
    assert "toy (quick smoke run" in capsys.readouterr().out
    assert mod.main([str(tmp_path / "none")]) == 2
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n{mod.START}\nold numbers\n{mod.END}\n## after\n")
    assert mod.main([str(root), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert "old numbers" not in text and "### toy" in text and text.startswith("# top\n")
    assert text.index(mod.START) < text.index("### toy") < text.index(mod.END) < text.index("## after")
    (tmp_path / "plain.md").write_text("no markers")
    assert mod.main([str(root), "--write", str(tmp_path / "plain.md")]) == 2
