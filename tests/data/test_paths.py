import pytest

from conehier.data.paths import DataNotFoundError, data_root, require_files


def test_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("CONEHIER_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("CONEHIER_DATA")
    monkeypatch.setenv("CONEHIER_CACHE", str(tmp_path / "cache"))
    assert data_root() == tmp_path / "cache"


def test_require_files_finds_subdir_or_flat(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("1")
    assert require_files("x", ["a.txt"], data_dir=tmp_path) == tmp_path / "x"
    assert require_files("x", ["a.txt"], data_dir=tmp_path / "x") == tmp_path / "x"


def test_offline_missing_names_the_path(tmp_path):
    with pytest.raises(DataNotFoundError) as exc:
        require_files("x", ["b.txt"], data_dir=tmp_path, url_for=lambda f: "http://127.0.0.1:9/" + f, what="test data")
    msg = str(exc.value)
    assert "test data not found" in msg and "b.txt" in msg and str(tmp_path / "x") in msg
