"""The notebooks execute top to bottom (their cells assert the findings they show)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, mke2fs, monkeypatch, request):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("FORENSICS_NOTEBOOK_WORK", str(tmp_path))
    if "needs the shared corpus" in path.read_text(encoding="utf-8"):  # skips (fails under CI's switch) without it
        monkeypatch.setenv("FORENSICS_EVIDENCE", str(request.getfixturevalue("evidence")))
        monkeypatch.setenv("FORENSICS_SIGMA_RULES", str(request.getfixturevalue("sigma_dir") / "rules" / "windows"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
