import json
import os
import subprocess
import sys

from conehier.cli import main


def test_info_json_builtin(capsys):
    assert main(["info", "toy:2,2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nodes"] == 7 and out["nodes_per_level"] == [1, 2, 4] and out["closure_edges"] == 10
    for key in ("nodes", "nodes_per_level", "edges", "closure_edges", "non_basic_edges", "roots", "leaves", "depth"):
        assert key in out


def test_info_ethec_and_noun(data_root, capsys):
    assert main(["info", "ethec", "--json", "--data-dir", str(data_root)]) == 0
    e = json.loads(capsys.readouterr().out)
    assert (e["nodes"], e["edges"], e["closure_edges"], e["non_basic_edges"]) == (723, 717, 1974, 1257)
    assert e["nodes_per_level"] == [6, 21, 135, 561] and e["samples"] == {"val": 5286, "test": 5049}
    assert main(["info", "wordnet-noun", "--json", "--data-dir", str(data_root)]) == 0
    n = json.loads(capsys.readouterr().out)
    assert (n["nodes"], n["closure_edges"], n["non_basic_edges"]) == (82114, 661127, 576764)


def test_info_errors_are_clean(capsys, tmp_path):
    assert main(["info", "nonsense"]) == 2
    assert "unknown hierarchy spec" in capsys.readouterr().err
    assert main(["info", "ethec", "--data-dir", str(tmp_path)]) == 2
    assert "ETHEC split files not found" in capsys.readouterr().err


def test_console_script_runs(data_root):
    env = dict(os.environ, CONEHIER_DATA=str(data_root))
    r = subprocess.run([sys.executable, "-m", "conehier.cli", "info", "cifar10", "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["leaves"] == 10


def test_info_hmc(data_root, capsys):
    assert main(["info", "hmc:cellcycle_FUN", "--json", "--data-dir", str(data_root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nodes"] == 500 and out["roots"] == 1  # 499 evaluated nodes + "root"
    assert out["samples"] == {"train": 1628, "valid": 848, "test": 1281}


def test_embed_command_with_defaults(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["embed", "--hierarchy", "toy:2,3", "--model", "hyperbolic-cones", "--dim", "2", "--train-percent", "50",
                 "--epochs", "3", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "test F1" in text and (out / "metrics.json").is_file() and (out / "embedding.png").is_file()


def test_embed_set_overrides(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["embed", "--hierarchy", "toy:2,2", "--model", "order", "--dim", "3", "--train-percent", "50",
                 "--epochs", "2", "--no-progress", "--set", "k_parent=2", "--set", "schedule=linear", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["k_parent"] == 2 and cfg["train"]["schedule"] == "linear"
    assert main(["embed", "--hierarchy", "toy:2,2", "--model", "order", "--dim", "3", "--set", "nonsense=1",
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown option 'nonsense'" in capsys.readouterr().err
