"""The notebooks are valid nbformat-4 JSON, hold the cells of the lesson scripts they come from, and
carry the outputs of a run made by the checkout's own lesson text and library code (their key)."""
import json
import re
from pathlib import Path

import pytest

from minidpo.harness import code_deps
from minidpo.tools import notebooks

ROOT = Path(__file__).resolve().parents[2]


def test_every_tutorial_has_its_notebook_and_its_cells_are_the_lessons():
    pairs = notebooks.targets()
    assert len(pairs) >= 20
    for script, nb_path in pairs:
        assert nb_path.is_file(), f"missing {nb_path}: run python -m minidpo.tools.notebooks"
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        assert notebooks.render(notebooks.without_outputs(nb)) == notebooks.render(notebooks.notebook(script)), \
            f"{nb_path} is stale: run {notebooks.COMMAND} --only {script.name[:2]}"


def test_every_notebook_holds_outputs_made_by_this_checkout():
    """The committed outputs were made by the current lesson text and the library code it reaches."""
    stale = {nb.name: why for s, nb in notebooks.targets() if (why := notebooks.why_stale(s, nb))}
    assert stale == {}, f"stale notebooks {stale}: run `{notebooks.COMMAND}`"
    assert notebooks.main(["--check"]) == 0


def _printed(nb: dict) -> str:
    """Everything a notebook's code cells printed (their stream outputs)."""
    return "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


def test_every_committed_notebook_states_claims_and_none_fails():
    """What a learner reads: each lesson's run checks its sentences about its numbers (✓), and the
    committed run shows no claim that does not hold (✗)."""
    from minidpo.harness.tutorial import HOLDS, failed_claims
    for _, nb_path in notebooks.targets():
        out = _printed(json.loads(nb_path.read_text(encoding="utf-8")))
        assert f"\n{HOLDS} " in "\n" + out, f"{nb_path.name}: no checked claim in its outputs"
        assert failed_claims(out) == [], f"{nb_path.name}: a claim that does not hold: {failed_claims(out)[:3]}"


def test_the_freshness_check_sees_a_changed_lesson_and_changed_library_code(monkeypatch, tmp_path):
    script, nb_path = notebooks.targets()[6]  # lesson 07
    assert notebooks.why_stale(script, nb_path) is None
    edited = tmp_path / script.name
    edited.write_text(script.read_text(encoding="utf-8").replace("five responses", "5 responses", 1), encoding="utf-8")
    assert notebooks.why_stale(edited, nb_path) == "its cells differ from the lesson's"
    real = code_deps.code_hashes

    def one_function_edited(*entries):
        hashes = real(*entries)
        return {**hashes, "bandit": "0" * 16}  # as if bandit.optimal_logp had changed
    monkeypatch.setattr(code_deps, "code_hashes", one_function_edited)
    assert notebooks.why_stale(script, nb_path) == "its outputs were made by other lesson text or library code"


def test_a_lesson_key_holds_what_the_lesson_reaches_and_not_more():
    derivation = ROOT / "tutorials" / "07_dpo_derivation.py"
    key = notebooks.lesson_key(derivation)
    assert {"bandit", "losses", "world", "harness.plots"} <= set(key["code"])
    assert not {"ppo", "grpo", "studies.frontier"} & set(key["code"])  # never imported by that lesson
    assert list(key["data"]) == ["tokenizer.tiktoken"]  # the tokenizer's merges, read by the Run it makes
    entries = code_deps.script_entries("from minidpo.harness import pipeline as P\nfrom minidpo import world\n"
                                       "from minidpo.dpo import DPOConfig\nP.stage_dpo(run)\nworld\nDPOConfig()\n")
    assert entries == ("dpo:DPOConfig", "harness.pipeline:stage_dpo", "world")


def test_notebooks_are_nbformat_4_with_the_setup_cell_first_and_their_figures_as_images():
    for script, nb_path in notebooks.targets():
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        assert nb["nbformat"] == 4 and isinstance(nb["nbformat_minor"], int) and "kernelspec" in nb["metadata"]
        outputs = []
        for cell in nb["cells"]:
            assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["source"], list)
            assert all(isinstance(line, str) for line in cell["source"]) and cell["metadata"] == {}
            if cell["cell_type"] == "code":
                outputs += cell["outputs"]
        assert nb["cells"][0]["cell_type"] == "markdown" and nb["cells"][0]["source"][0].startswith("# ")
        setup = "".join(nb["cells"][1]["source"])
        assert "pip" in setup and 'find_spec("minidpo")' in setup
        compile("".join("".join(c["source"]) + "\n" for c in nb["cells"] if c["cell_type"] == "code"), str(nb_path), "exec")
        assert not [o for o in outputs if o["output_type"] == "error"], f"{nb_path.name}: a cell failed"
        text = json.dumps(outputs)
        assert "<Figure size" not in text, f"{nb_path.name}: a figure printed as text"
        shows = len(re.findall(r"^show\(", script.read_text(encoding="utf-8"), flags=re.M))
        images = [o for o in outputs if o["output_type"] == "display_data" and "image/png" in o.get("data", {})]
        assert len(images) >= min(shows, 1), f"{nb_path.name}: its figures are not in the notebook"


def test_cells_split_on_markers_and_lose_comment_prefixes():
    cells = notebooks.cells_of("# %% [markdown]\n# # Title\n# $x^2$\n\n# %% A step\nx = 1\n# %%\ny = 2\n")
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "code"]
    assert cells[0]["source"] == ["# Title\n", "$x^2$"] and cells[1]["source"] == ["# A step\n", "x = 1"]


@pytest.mark.parametrize("name", ["dpo_loss(", "batch_loss(", "stage_dpo(", "sweep.trained(run, \"dpo\""])
def test_the_derivation_comes_before_the_first_lesson_that_trains_or_computes_the_dpo_loss(name):
    lessons = [s for s, _ in notebooks.targets()]
    derivation = next(i for i, s in enumerate(lessons) if "## The objective and its optimum" in s.read_text(encoding="utf-8"))
    users = [i for i, s in enumerate(lessons) if i != derivation and name in s.read_text(encoding="utf-8")]
    assert users and derivation < min(users), f"{lessons[min(users)].name} uses {name} before the derivation"
