"""The notebooks run, top to bottom, on runs the tests produce."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_without_outputs():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count")
                   for c in nb.cells if c.cell_type == "code"), f"{path.name} holds outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_on_a_sweep(path, analysis_sweep, monkeypatch):
    monkeypatch.setenv("COPE_ANALYSIS_RUNS", str(analysis_sweep))
    monkeypatch.setenv("COPE_ANALYSIS_RESAMPLES", "500")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("text", ""))
                     for o in outputs)
    assert "Table 3: main results" in text and "Table 13: seeds" in text
    assert "12 of 30 (unfinished)" in text  # the killed cell, counted for what it finished
    assert "vs large" in text and "p (Holm)" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
