"""The grader: a learner's function against the library's on every case of an exercise.

The learner's code runs in a child process (child.py), under a time limit; this module, in the
parent, computes the library's outcomes, compares, and alone decides the verdict. An answer is
right when, on every case, every output has the library's shape, dtype and values (within float
tolerance; NaN and ±inf must match too), is detached where the library detaches it, its gradient
(when the first output carries one) is the library's, and every input is left as it came.

On a wrong answer the report shows the smallest failing case, what differs first, expected against
got, and names each classic mistake of the exercise that the answer matches on every case. A file
that does not load, a function that raises, exits, hangs past the time limit or kills its process
is an `error` verdict naming the cause, the file and the case; a stub still raising
NotImplementedError is "not written yet". A file that imports the module holding the library's
solution is graded like any other and flagged `uses-library`.
"""
from __future__ import annotations

import ast
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..training import one_thread
from .child import Child, Foreign, Outcome, Raised, Reply, call, kind
from .spec import CELLS, Exercise

NOT_WRITTEN = "not written yet"
TIME_LIMIT = 10.0  # seconds per exercise: grading the slowest correct file takes well under 0.1 s (docs/exercises.md)


class UsageError(ValueError):
    """A command the grader cannot carry out (a missing file, no such function): exit code 2."""


@dataclass
class Verdict:
    exercise: str
    status: str                  # "right", "wrong", "not written", "error", "missing"
    report: str                  # what to print, several lines
    mistakes: list = field(default_factory=list)  # names of the mistakes matched
    flags: list = field(default_factory=list)     # "uses-library"
    output: str = ""             # what the learner's code printed while it was graded
    cause: str = ""              # an error's cause in a few words ("time limit", "sys.exit")

    @property
    def right(self) -> bool:
        return self.status == "right"


MODIFIES_INPUTS = ("modifies-its-inputs", "a function must leave its inputs as they came: the caller reads them again "
                   "after it (REINFORCE logs the rewards it passed in, PPO fits its value model to the values), so a "
                   "change in place corrupts what a run logs or learns. Work out of place (x = x - y, not x -= y; "
                   "torch.where, not x[mask] = 0) or on a copy (x.clone()).")


# --- the library's side, computed once per exercise ------------------------------------------------
@dataclass
class Reference:
    cases: list          # [Case], smallest first
    expected: list       # [Outcome] of the library's function
    mistakes: list       # [(Mistake, [Outcome])] of each catalogued mistake


_REFERENCES: dict[str, Reference] = {}


def reference(ex: Exercise) -> Reference:
    if ex.name not in _REFERENCES:
        cases = ex.cases()
        with one_thread():  # a few numbers each: a second thread only slows it
            expected = [_call(ex, ex.solution, c) for c in cases] if ex.solution else []
            mistakes = [(m, [_call(ex, m.fn, c) for c in cases]) for m in ex.mistakes]
        _REFERENCES[ex.name] = Reference(cases, expected, mistakes)
    return _REFERENCES[ex.name]


def _call(ex: Exercise, fn, case, path=None) -> Outcome:
    o = call(fn, case.inputs, case.grad, len(ex.outputs), path)
    o.grad_args = tuple(ex.args[i] for i in case.grad)
    return o


# --- grading -----------------------------------------------------------------------------------------
def grade_function(ex: Exercise, fn, path=None, **options) -> Verdict:
    """Grade `fn` in THIS process (the library's functions, the tests' learners); a learner's file
    goes through `grade_files`, which runs it in a child."""
    cases = reference(ex).cases
    outcomes = []
    with one_thread():
        for case in cases:
            outcomes.append(_call(ex, fn, case, path))
            if outcomes[-1].error is not None:
                break
        return judge(ex, outcomes, path, **options)


def grade_files(files, time_limit: float = TIME_LIMIT, child: Child | None = None, **options) -> list[Verdict]:
    """[(exercise, path)] graded in one child process (`child`, or one started here); a child that
    died or ran out of time is replaced for the exercises left. Returns a verdict each."""
    verdicts = []
    try:
        for ex, path in files:
            path = Path(path)
            if not path.is_file():
                verdicts.append(Verdict(ex.name, "missing", f"{ex.name}: no file {path}"))
                continue
            child = child or Child()
            reply = child.run(_job(ex, path), time_limit)
            if reply.kind == "start":
                said = reply.output.strip().splitlines()
                raise UsageError("grade: the grader's child process did not start (python -m minidpo.exercises.child): "
                                 + (said[-1] if said else "no message"))
            if reply.kind != "result":
                child = None  # it was ended: the next exercise gets a new one
            verdict = from_reply(ex, path, reply, time_limit, **options)
            verdict.output = reply.output
            verdicts.append(verdict)
    finally:
        if child is not None:
            child.close()
    return verdicts


def _job(ex: Exercise, path: Path) -> dict:
    return {"kind": "grade", "path": str(path.resolve()), "shown": str(path), "function": ex.function,
            "n_outputs": len(ex.outputs), "cases": [[list(c.inputs), list(c.grad)] for c in reference(ex).cases]}


def from_reply(ex: Exercise, path: Path, reply: Reply, time_limit: float, **options) -> Verdict:
    """The verdict on what the child sent back (or on how it ended)."""
    cases = reference(ex).cases
    if reply.kind in ("time", "died", "garbled"):
        on = _on_case(ex, reply.case, path)
        if reply.kind == "garbled":
            return _error(ex, f"the process running your {ex.function} {on} wrote into the grader's pipe "
                              f"({reply.result['why']})", "garbled pipe")
        if reply.kind == "time":
            return _error(ex, f"your {ex.function} did not finish within the time limit of {time_limit:g} s, {on}: "
                              "an endless loop? (--time-limit sets the limit)", "time limit")
        code = reply.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return _error(ex, f"the process running your {ex.function} was killed by {name} {on}"
                              + (" (out of memory?)" if name == "SIGKILL" else " (a crash)"), "crash")
        return _error(ex, f"the process running your {ex.function} ended with exit code {code} {on}: os._exit? "
                          "A function returns its answer; the grader alone decides the exit code", "os._exit")
    result = reply.result
    if "missing" in result:
        defines = ", ".join(result["missing"]) or "no function"
        return Verdict(ex.name, "missing", f"{ex.name}: {path} defines no function {ex.function} (it defines: {defines})")
    if "load_error" in result:
        return _load_error(ex, Raised(**result["load_error"]))
    outcomes = [_decode(ex, case, o) for case, o in zip(cases, result["outcomes"])]
    verdict = judge(ex, outcomes, path, **options)
    used = library_imports(ex, path)
    if result.get("module", "").startswith("minidpo.") and result["module"] not in used:
        used.append(result["module"])
    if used:
        verdict.flags.append("uses-library")
        verdict.report += (f"\nFlagged uses-library: {path} uses {', '.join(used)}, where the library's own solution "
                           "lives: this grade may be the library's, not yours.")
    return verdict


def _decode(ex: Exercise, case, o: dict) -> Outcome:
    def value(x):
        if "tensor" in x:
            t = x["tensor"]
            return t.requires_grad_() if x["requires_grad"] and t.is_floating_point() else t
        return x["value"] if "value" in x else Foreign(x["kind"], x["text"])
    return Outcome(None if o["outputs"] is None else tuple(value(x) for x in o["outputs"]),
                   None if o["grads"] is None else tuple(o["grads"]), tuple(ex.args[i] for i in case.grad),
                   None if o["error"] is None else Raised(**o["error"]), o["kind"], tuple(o["inputs"]))


def judge(ex: Exercise, outcomes: list[Outcome], path=None, **options) -> Verdict:
    """The verdict on the learner's outcomes (one a case, stopping at the first that raised)."""
    ref = reference(ex)
    if outcomes[-1].error is not None:
        i = len(outcomes) - 1
        return _raised(ex, outcomes[-1].error, f"on case {i + 1} of {len(ref.cases)}, \"{ref.cases[i].title}\"",
                       _show_inputs(ex, ref.cases[i]))
    if ex.grade is not None:  # a judge of its own (the bug hunt: a name, not a tensor)
        o = outcomes[0]
        return ex.grade(ex, o.outputs[0] if o.outputs else None, **options)
    failing = [i for i, (c, e, g) in enumerate(zip(ref.cases, ref.expected, outcomes))
               if differences(ex, e, g) or changed_inputs(ex, c, g)]
    if not failing:
        return Verdict(ex.name, "right", f"{ex.name}: right on all {len(ref.cases)} cases (values, shapes, dtypes"
                       + (", detached outputs" if ex.detached else "") + ", gradients where they matter, inputs left "
                       f"unchanged).\n  The library's own: {ex.solution_at}.")
    mistakes = [m for m, theirs in ref.mistakes if matches(ex, m, theirs, outcomes)]
    named = [m.name for m in mistakes]
    if any(changed_inputs(ex, c, g) for c, g in zip(ref.cases, outcomes)):
        named.append(MODIFIES_INPUTS[0])
    i = failing[0]
    return Verdict(ex.name, "wrong", _wrong_report(ex, ref.cases[i], i, len(ref.cases), ref.expected[i], outcomes[i],
                                                   mistakes), named)


def matches(ex: Exercise, mistake, theirs: list[Outcome], got: list[Outcome]) -> bool:
    """Does the answer behave like `mistake` (its outcomes `theirs`) on every case, on the outputs
    the mistake is about?"""
    for m, g in zip(theirs, got):
        # whether outputs are detached counts only for a mistake about that (one that leaves them attached)
        about_detaching = m.outputs is not None and any(
            torch.is_tensor(o) and o.requires_grad for n, o in zip(ex.outputs, m.outputs) if n in ex.detached)
        if m.error is not None or differences(ex, m, g, mistake.outputs, about_detaching):
            return False
    return True


# --- comparing ----------------------------------------------------------------------------------------
def _tolerance(tolerance: dict, *dtypes) -> tuple:
    """(rtol, atol): the loosest of those of `dtypes` (a float32 answer to a float64 case is judged as float32)."""
    pairs = [tolerance.get(str(d).replace("torch.", ""), (1e-5, 1e-6)) for d in dtypes]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def _agree(got, expected, tolerance, dtype=None) -> torch.Tensor:
    """Elementwise: got ≈ expected (NaN matches NaN, ±inf matches itself)."""
    rtol, atol = _tolerance(tolerance, expected.dtype, *([dtype] if dtype else []))
    return torch.isclose(got.detach().double(), expected.detach().double(), rtol, atol, equal_nan=True)


def _close(got, expected, tolerance, dtype=None) -> bool:
    return bool(_agree(got, expected, tolerance, dtype).all())


def differences(ex: Exercise, expected: Outcome, got: Outcome, only: tuple = (), detach: bool = True) -> list[str]:
    """What differs between two outcomes of one case, in words (empty: they agree). `only`: compare
    these outputs alone (and the gradient only when the first output is among them); detach=False
    leaves out whether the outputs that should be detached are."""
    n = len(ex.outputs)
    if got.outputs is None or len(got.outputs) != n:
        return [f"returns {got.kind}; expected a tuple of {n}: ({', '.join(ex.outputs)})"]
    out = []
    for name, g, e in zip(ex.outputs, got.outputs, expected.outputs):
        if only and name not in only:
            continue
        if not torch.is_tensor(g):
            out.append(f"{name} is {kind(g)}, not a tensor")
        elif tuple(g.shape) != tuple(e.shape):
            out.append(f"{name} has shape {tuple(g.shape)}, expected {tuple(e.shape)}")
        elif g.dtype != e.dtype:
            out.append(f"{name} has the right values but dtype {g.dtype}, expected {e.dtype} (the output's dtype "
                       "follows the inputs')" if g.dtype.is_floating_point and _close(g, e, ex.tolerance, g.dtype)
                       else f"{name} is {g.dtype}, expected {e.dtype}, and its values differ")
        elif not _close(g, e, ex.tolerance):
            out.append(f"{name} {_where_it_differs(g, e, ex.tolerance)}")
        elif detach and name in ex.detached and g.requires_grad != e.requires_grad:
            out.append(f"{name} carries a gradient: the library returns it detached (.detach())" if g.requires_grad
                       else f"{name} carries no gradient, while the library's does")
    if out or (only and ex.outputs[0] not in only) or expected.grads is None:
        return out
    if got.grads is None:
        return [f"the values are right, the gradient is not: {ex.outputs[0]} carries no gradient; it must be "
                "differentiable (no .item(), .detach(), torch.no_grad(), or new tensors built from its numbers)"]
    wrong = [f"the gradient of {ex.outputs[0]}.sum() w.r.t. {name} {_where_it_differs(g, e, ex.tolerance)}"
             for name, g, e in _gradients(expected, got) if not _close(g, e, ex.tolerance)]
    return [f"the values are right, the gradient is not: {wrong[0]}", *wrong[1:]] if wrong else []


def _gradients(expected: Outcome, got: Outcome):
    """(input name, got's gradient, expected's gradient); no gradient at all (None) reads as zeros."""
    for name, g, e in zip(got.grad_args, got.grads, expected.grads):
        ref = e if e is not None else g
        if ref is None:
            continue
        yield name, g if g is not None else torch.zeros_like(ref), e if e is not None else torch.zeros_like(ref)


def changed_inputs(ex: Exercise, case, got: Outcome) -> list[str]:
    """Each input the function changed in place: which, and its first changed elements."""
    out = []
    for name, before, after in zip(ex.args, case.inputs, got.inputs):
        if not torch.is_tensor(before):
            continue
        if not torch.is_tensor(after) or after.shape != before.shape or after.dtype != before.dtype:
            out.append(f"{name} was changed in place: it came as {kind(before)} of {before.dtype}, "
                       f"it left as {kind(after)}" + (f" of {after.dtype}" if torch.is_tensor(after) else ""))
            continue
        changed = before != after
        if before.is_floating_point():
            changed &= ~(before.isnan() & after.isnan())
        if changed.any():
            at = changed.nonzero()[:3].tolist()
            pairs = "; ".join(f"{idx}: {_number(before[tuple(idx)])} -> {_number(after[tuple(idx)])}" for idx in at)
            out.append(f"{name} was changed in place: {int(changed.sum())} of {before.numel()} elements, first at "
                       f"{pairs}")
    return out


def _number(x) -> str:
    return f"{x.item():.4f}" if x.is_floating_point() else str(x.item())


LARGE = 4  # a tensor with more elements than this: its first differing elements are named, with their index


def _where_it_differs(got, expected, tolerance, n: int = 3) -> str:
    """'differs' for a small tensor; for a large one, at which elements first:
    'differs at 2 of 24 elements, first at [0, 1, 2]: expected 0.5000, got 0.2500; ...'."""
    if expected.numel() <= LARGE or got.shape != expected.shape:
        return "differs"
    wrong = ~_agree(got, expected, tolerance)
    pairs = "; ".join(f"{idx}: expected {_number(expected.detach()[tuple(idx)])}, got {_number(got.detach()[tuple(idx)])}"
                      for idx in wrong.nonzero()[:n].tolist())
    return f"differs at {int(wrong.sum())} of {wrong.numel()} elements, first at {pairs}"


# --- the reports -------------------------------------------------------------------------------------
def _raised(ex: Exercise, error: Raised, context: str, details: str = "") -> Verdict:
    """The verdict on a learner's function that raised (or exited): "not written yet" for the
    stub's NotImplementedError, else the cause and where in their file it happened."""
    if error.type == "NotImplementedError":
        return Verdict(ex.name, "not written", f"{ex.name}: {NOT_WRITTEN} ({error.where} raises "
                       f"NotImplementedError): write {ex.function}, then grade it again.")
    extra = f"\n{details}" if details else ""
    if error.type == "SystemExit":
        return _error(ex, f"your {ex.function} called sys.exit({error.code}) at {error.where} {context}: a function "
                          "returns its answer; the grader alone decides the exit code" + extra, "sys.exit")
    if error.type == "MemoryError" or "can't allocate memory" in error.message:
        return _error(ex, f"your {ex.function} ran out of memory at {error.where} {context} ({error.type}: "
                          f"{error.message.splitlines()[0][:200] if error.message else 'no message'})" + extra,
                      "out of memory")
    hint = (" (it changes an input in place: inputs must not change)"
            if "in-place operation" in error.message else "")
    said = f": {error.message}" if error.message else ""
    return _error(ex, f"your {ex.function} raised {error.type} at {error.where} {context}{said}{hint}" + extra,
                  error.type if error.type == "KeyboardInterrupt" else f"raised {error.type}")


def _load_error(ex: Exercise, error: Raised) -> Verdict:
    if error.type == "SyntaxError":
        return _error(ex, f"{error.where}: SyntaxError: {error.message} (the file does not compile)", "does not load")
    if error.type == "SystemExit":
        return _error(ex, f"{error.where}: the file called sys.exit({error.code}) while loading: a file of exercises "
                          "defines functions; the grader alone decides the exit code", "sys.exit")
    return _error(ex, f"{error.where}: {error.type}: {error.message} (while the file was loading)", "does not load")


def _error(ex: Exercise, text: str, cause: str) -> Verdict:
    return Verdict(ex.name, "error", f"{ex.name}: {text}", cause=cause)


def _on_case(ex: Exercise, case: int | None, path) -> str:
    cases = reference(ex).cases
    if case is None or case < 0:
        return f"while {path} was loading (its top-level code)"
    return f"on case {case + 1} of {len(cases)}, \"{cases[case].title}\" ({path})"


def _wrong_report(ex, case, i, n, expected: Outcome, got: Outcome, mistakes) -> str:
    lines = [f"{ex.name}: wrong on case {i + 1} of {n}, \"{case.title}\" (the smallest that fails)"]
    wrong, changed = differences(ex, expected, got), changed_inputs(ex, case, got)
    if changed and not wrong:
        changed[0] = f"the outputs are right, but {changed[0]}"
    lines += [f"  - {d}" for d in wrong + changed]
    lines.append(_show_inputs(ex, case))
    if got.outputs is not None and len(got.outputs) == len(ex.outputs):
        for name, e, g in zip(ex.outputs, expected.outputs, got.outputs):
            digits = _digits(e, g)
            lines.append(f"  {name}:\n    expected {_indent(show(e, digits), 13)}"
                         f"\n    got      {_indent(show(g, digits), 13)}")
    if expected.grads is not None and got.grads is not None:
        for name, g, e in _gradients(expected, got):
            if not _close(g, e, ex.tolerance):
                lines.append(f"  gradient of {ex.outputs[0]}.sum() w.r.t. {name}:\n    expected {_indent(show(e), 13)}"
                             f"\n    got      {_indent(show(g), 13)}")
    for m in mistakes:
        lines += [f"A classic mistake: {m.name}", f"  {m.why}", f"  Read: {CELLS[m.cell].where()}"]
    if changed:
        lines += [f"A classic mistake: {MODIFIES_INPUTS[0]}", f"  {MODIFIES_INPUTS[1]}"]
    elif not mistakes:
        lines.append("No catalogued classic mistake matches it on every case: compare expected and got above, "
                     f"and reread {ex.cell_where()}.")
    return "\n".join(lines)


def _show_inputs(ex, case) -> str:
    width = max((len(a) for a in ex.args), default=0)
    return "\n".join(f"  {a:<{width}} = {_indent(show(x), width + 5)}" for a, x in zip(ex.args, case.inputs))


def _digits(e, g) -> int:
    """4 decimals, or 8 when expected and got differ only beyond the 4th (an ε of 1e-4, say)."""
    if torch.is_tensor(e) and torch.is_tensor(g) and e.shape == g.shape and not torch.equal(e, g):
        gap = (e.detach().double() - g.detach().double()).abs()
        if bool((gap.isfinite() & (gap < 1e-3)).all()):
            return 8
    return 4


def show(x, digits: int = 4) -> str:
    """A value as a learner reads it: tensors with 4 decimals (or `digits`), no scientific notation."""
    if not torch.is_tensor(x):
        return repr(x)
    torch.set_printoptions(precision=digits, sci_mode=False, linewidth=100)
    try:
        return repr(x.detach())
    finally:
        torch.set_printoptions(profile="default")


def _indent(text: str, n: int) -> str:
    return text.replace("\n", "\n" + " " * n)


# --- uses-library: read from the file, never run -------------------------------------------------------
def solution_modules(ex: Exercise) -> set[str]:
    """The modules that hold an exercise's solution: those its `solution_at` names (minidpo/losses.py
    -> minidpo.losses), and the exercises' own room (its adapters, the bug hunt's draw). The bug
    hunt names the museum to read, which lists the bugs but not the planted one."""
    named = {p[:-3].replace("/", ".") for p in re.findall(r"minidpo/[\w/]+\.py", ex.solution_at)}
    return (named if ex.grade is None else set()) | {"minidpo.exercises"}


def library_imports(ex: Exercise, path) -> list[str]:
    """The solution's modules that the file at `path` imports (ast: `import m`, `from m import x`,
    `from minidpo import losses`; anywhere in the file). Empty when it does not parse."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return []
    modules, found = solution_modules(ex), []
    held = lambda name: any(name == m or name.startswith(m + ".") for m in modules)  # noqa: E731
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if held(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if held(node.module) else [
                f"{node.module}.{a.name}" for a in node.names if held(f"{node.module}.{a.name}")]
        else:
            continue
        found += [n for n in names if n not in found]
    return found
