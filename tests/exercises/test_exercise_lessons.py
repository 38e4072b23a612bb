"""Every lesson cell the exercises point to (spec.CELLS, the one table of them) exists: the lesson's
file in tutorials/ and, in it, a markdown heading with that text. And docs/exercises.md names every
exercise and every classic mistake."""
import re
from pathlib import Path

import pytest

from minidpo.exercises.catalogue import EXERCISES
from minidpo.exercises.spec import CELLS

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"


def test_every_exercise_and_mistake_points_into_the_table_and_every_row_is_used():
    used = {ex.cell for ex in EXERCISES} | {m.cell for ex in EXERCISES for m in ex.mistakes}
    assert used == set(CELLS)


@pytest.mark.parametrize("key", sorted(CELLS))
def test_the_lesson_cell_exists(key):
    cell = CELLS[key]
    path = TUTORIALS / f"{cell.lesson}.py"
    assert path.is_file(), path
    headings = re.findall(r"^# #+ (.+?)\s*$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert cell.heading in headings, (path.name, headings)


def test_the_docs_name_every_exercise_and_every_mistake():
    docs = (ROOT / "docs" / "exercises.md").read_text(encoding="utf-8")
    for ex in EXERCISES:
        assert f"| {ex.name} |" in docs and f"`{ex.function}(" in docs, ex.name
        for m in ex.mistakes:
            assert f"| {ex.name} | `{m.name}` |" in docs, (ex.name, m.name)


def test_each_lesson_that_teaches_an_exercise_ends_by_pointing_to_it():
    """The lesson's last cell ("What to remember") names `grade NAME` for each exercise it teaches."""
    for ex in EXERCISES:
        text = (TUTORIALS / f"{CELLS[ex.cell].lesson}.py").read_text(encoding="utf-8")
        last = text[text.rindex("# %% [markdown]"):]
        assert f"python -m minidpo grade {ex.name}" in last, (CELLS[ex.cell].lesson, ex.name)
