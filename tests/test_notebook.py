"""The analysis notebook runs top to bottom on the shipped model and contains no logic of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "misclassified.ipynb"
CELL_TIMEOUT_S = 300  # a hang guard only; the whole notebook takes seconds


def _code(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def test_notebook_has_no_logic_of_its_own():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    logic = (
        ast.FunctionDef,
        ast.ClassDef,
        ast.For,
        ast.While,
        ast.Lambda,
        ast.ListComp,
        ast.DictComp,
        ast.GeneratorExp,
        ast.If,
    )
    for source in _code(nb):
        found = [type(node).__name__ for node in ast.walk(ast.parse(source)) if isinstance(node, logic)]
        assert not found, f"notebook cell has {found}; move the logic into digitrec:\n{source}"


def test_notebook_executes_on_the_shipped_model(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # start from a clean slate so stale saved outputs cannot pass the test
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "accuracy" in text and "macro" in text and "true -> predicted" in text
    images = [o for o in outputs if o.output_type == "execute_result" and "image/png" in o.get("data", {})]
    assert len(images) == 3  # confusion matrix, misclassified gallery, reliability diagram
