"""The notebooks are valid nbformat-4 JSON and in sync with the tutorial scripts they come from."""
import json

from minidpo.tools import notebooks


def test_every_tutorial_has_its_notebook_and_it_is_in_sync():
    pairs = notebooks.targets()
    assert len(pairs) >= 17
    for script, nb_path in pairs:
        assert nb_path.is_file(), f"missing {nb_path}: run python -m minidpo.tools.notebooks"
        assert nb_path.read_text(encoding="utf-8") == notebooks.render(notebooks.notebook(script)), \
            f"{nb_path} is stale: run python -m minidpo.tools.notebooks"
    assert notebooks.main(["--check"]) == 0


def test_notebooks_are_nbformat_4_with_the_setup_cell_first():
    for _, nb_path in notebooks.targets():
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        assert nb["nbformat"] == 4 and isinstance(nb["nbformat_minor"], int) and "kernelspec" in nb["metadata"]
        for cell in nb["cells"]:
            assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["source"], list)
            assert all(isinstance(line, str) for line in cell["source"]) and cell["metadata"] == {}
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None
        assert nb["cells"][0]["cell_type"] == "markdown" and nb["cells"][0]["source"][0].startswith("# ")
        setup = "".join(nb["cells"][1]["source"])
        assert "pip" in setup and 'find_spec("minidpo")' in setup
        compile("".join("".join(c["source"]) + "\n" for c in nb["cells"] if c["cell_type"] == "code"), str(nb_path), "exec")


def test_cells_split_on_markers_and_lose_comment_prefixes():
    cells = notebooks.cells_of("# %% [markdown]\n# # Title\n# $x^2$\n\n# %% A step\nx = 1\n# %%\ny = 2\n")
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "code"]
    assert cells[0]["source"] == ["# Title\n", "$x^2$"] and cells[1]["source"] == ["# A step\n", "x = 1"]
