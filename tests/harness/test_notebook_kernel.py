"""The notebooks run in a real Jupyter kernel (nbclient + ipykernel, as a learner's Jupyter runs
them) and every figure a lesson shows arrives as an image, not as the text `<Figure size ...>`.

Each notebook runs with MINIDPO_FAST=1 (the tiny settings, in `runs/tutorial-fast`) in a copy of the
tiny run folder, so the kernel reuses the trained stages. (The committed notebooks were executed the
same way at the lessons' defaults: tests/harness/test_notebooks.py checks what they hold.)
"""
import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the slow tier: `python -m pytest -q -m slow`

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[2]
# the derivation's lesson, whose figures are cheap to make from the tiny run folder; it must show
# >= 1 image. Every lesson runs cell by cell in tests/harness/test_tutorials.py, which fails on a
# cell that ends in a figure; this one shows that `show` itself gives a real kernel an image.
NOTEBOOKS = ["07_dpo_derivation"]


@pytest.fixture(scope="module")
def workdir(fast_run, tmp_path_factory):
    run, _ = fast_run
    here = tmp_path_factory.mktemp("kernel")
    shutil.copytree(run.out, here / "runs" / "tutorial-fast")
    return here


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_notebook_runs_in_a_kernel_and_its_figures_are_images(name, workdir, monkeypatch):
    monkeypatch.setenv("MINIDPO_FAST", "1")
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)  # cell ids and all: no warning that will one day be an error
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}}).execute()
    outs = outputs(nb)
    images = [o for o in outs if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    as_text = [o for o in outs if "<Figure size" in json.dumps(o.get("data", {})) + "".join(o.get("text", ""))]
    assert images, f"{name}: no figure arrived as an image"
    assert not as_text, f"{name}: a figure printed as text: {as_text[0]}"
    errors = [o for o in outs if o.get("output_type") == "error"]
    assert not errors
