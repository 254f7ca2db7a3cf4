"""examples/tutorial.ipynb runs top to bottom in a real kernel, as a user would run it: a
tiny GPBT-PL run through the Python API, the store read with pandas, the report written."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpbt.store import load

# compiles and trains a JAX program in a kernel: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


def test_the_tutorial_notebook_runs_from_config_to_report(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Runs in a fresh folder, so its relative runs/tutorial lands in tmp_path; a failing cell
    # raises CellExecutionError with that cell's traceback.
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    run = tmp_path / "runs" / "tutorial"
    exp = load(run)
    assert sorted(exp.reports["time"].unique().tolist()) == [2048, 4096, 6144]
    assert exp.reports["member"].nunique() == 4
    assert (run / "report" / "report.html").is_file()
    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(nb.cells)}
    printed = "".join(o.get("text", "") for out in outputs.values() for o in out)
    assert "best member" in printed and "its hyperparameters:" in printed
    # the pandas table of scores and the report's figure were displayed in the notebook
    shown = [o for out in outputs.values() for o in out if o["output_type"] in
             ("execute_result", "display_data")]  # fmt: skip
    assert any("text/html" in o["data"] for o in shown)
    assert any("image/png" in o["data"] for o in shown)
