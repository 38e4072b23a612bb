"""The shape of the package holds: the core story imports only the core, studies never import the
CLI or the pipeline, interop only the core, the exercises only the core, the harness and the
studies (and only the CLI imports them), and no module imports itself back through others.

The imports are read from the source with `ast` (`harness.code_deps.imported_modules`, the same
reader the provenance keys use), so a lazy import inside a function counts like one at the top.
"""
import ast

import pytest

from minidpo.harness.code_deps import PACKAGE, imported_modules, module_file

ROOT = PACKAGE.parent
ROOMS = ("studies", "harness", "interop", "tools", "exercises")


def modules() -> list[str]:
    """Every module of the package as a dotted name inside minidpo ("dpo", "studies.museum")."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] != "__init__" or len(parts) == 1:
            out.append(".".join(parts))
    return out


def room(module: str) -> str:
    return module.split(".")[0] if module.split(".")[0] in ROOMS else "core"


# room -> the rooms it may import (itself always). The CLI (the entry point) may import anything.
ALLOWED = {"core": {"core"}, "interop": {"core"}, "harness": {"core", "interop"},
           "studies": {"core", "interop", "harness"}, "tools": {"core", "interop", "harness"},
           "exercises": {"core", "harness", "studies"}}
ENTRY = {"__main__", "harness.cli"}
NEVER_FROM_STUDIES = {"harness.cli", "harness.pipeline", "harness.report", "harness.tutorial"}


def graph() -> dict[str, set[str]]:
    return {m: imported_modules(m) - {m, "__init__"} for m in modules()}


def test_the_reader_sees_relative_absolute_and_lazy_imports():
    g = graph()
    assert {"losses", "model", "checkpoint", "training"} <= g["dpo"]          # from .x import y
    assert {"studies.doctor", "dpo"} <= g["studies.museum"]                   # from .x / from ..x
    assert "studies.museum" in g["harness.cli"]                               # a lazy import in a function
    assert {"harness.plots", "studies.sweep"} <= g["studies.diversity"]      # from ..harness import plots


def test_every_room_imports_only_what_it_may():
    broken = [f"{m} -> {d}" for m, deps in graph().items() if m not in ENTRY
              for d in deps if room(d) != room(m) and room(d) not in ALLOWED[room(m)]]
    assert broken == []


def test_no_study_imports_the_cli_the_pipeline_or_the_report():
    broken = [f"{m} -> {d}" for m, deps in graph().items() if room(m) == "studies" for d in deps & NEVER_FROM_STUDIES]
    assert broken == []


def test_no_import_circles():
    g = graph()
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for d in sorted(g.get(m, ())):
            if state.get(d) == "open":
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"
    for m in g:
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_core_sits_at_the_top_and_opens_with_its_place_in_the_story():
    core = [m for m in modules() if room(m) == "core" and m not in ("__init__", "__main__")]
    assert 10 <= len(core) <= 20, core
    for m in core:
        doc = ast.get_docstring(ast.parse(module_file(m).read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()[0]) > 20, m


def test_the_readme_tree_lists_every_module_in_its_room():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tree = readme[readme.index("## The code"):]
    tree = tree[:tree.index("\n## ", 5)]
    for m in modules():
        if m in ("__init__", "__main__"):
            continue
        assert f"{m.split('.')[-1]}.py" in tree, m


@pytest.mark.parametrize("tutorial", sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py")), ids=lambda p: p.stem)
def test_tutorials_take_what_they_teach_from_the_core(tutorial):
    """A lesson imports the core, a study it shows, the plots and the tutorial helper; never the CLI
    or the pipeline's internals."""
    tree = ast.parse(tutorial.read_text(encoding="utf-8"))
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "minidpo.harness.tutorial" in names
    assert not names & {"minidpo.harness.cli", "minidpo.cli"}
