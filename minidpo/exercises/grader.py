"""The grader: a learner's function against the library's on every case of an exercise.

Each case is run on fresh copies of its inputs (some with requires_grad). An answer is right when
every output has the library's shape, dtype and values (within float tolerance; NaN and ±inf must
match too), is detached where the library detaches it, and, when the first output carries a
gradient, its gradient w.r.t. those inputs is the library's. On a wrong answer the report shows the
smallest failing case, expected against got, and names each classic mistake of the exercise that
the answer matches on every case. A learner's file that does not load, or a function that raises,
is one message naming the file and the line; a stub still raising NotImplementedError is "not
written yet".
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..training import one_thread
from .spec import CELLS, Exercise

NOT_WRITTEN = "not written yet"


class UsageError(ValueError):
    """A command the grader cannot carry out (a missing file, no such function): exit code 2."""


class LearnerError(Exception):
    """The learner's code failed to load or raised: the message names the file and the line."""


@dataclass
class Verdict:
    exercise: str
    status: str                  # "right", "wrong", "not written", "error"
    report: str                  # what to print, several lines
    mistakes: list = field(default_factory=list)  # names of the classic mistakes matched

    @property
    def right(self) -> bool:
        return self.status == "right"


# --- the learner's file -------------------------------------------------------------------------
def load_module(path):
    """The learner's file as a module (run once). Raises UsageError when there is no such file,
    LearnerError when it does not compile or raises while loading."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no file {path}" + (" (a folder)" if path.is_dir() else ""))
    name = "minidpo_learner_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect.getsource and dataclasses look modules up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise LearnerError(f"{path}:{e.lineno}: {type(e).__name__}: {e.msg} (the file does not compile)") from None
    except Exception as e:  # anything the learner's top-level code raises
        raise LearnerError(f"{where(e, path)}: {type(e).__name__}: {e} (while the file was loading)") from None
    return module


def where(error: BaseException, path) -> str:
    """file:line of the deepest frame of the traceback inside the learner's file (else the file)."""
    target = str(Path(path).resolve()) if path else None
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__)
             if target and str(Path(f.filename).resolve()) == target]
    return f"{path}:{lines[-1]}" if lines else str(path or "your function")


# --- running one case ------------------------------------------------------------------------------
@dataclass
class Outcome:
    outputs: tuple | None = None  # what the function returned, as a tuple
    grads: tuple | None = None    # d(sum of the first output)/d(each grad input); None: no gradient
    grad_args: tuple = ()         # the names of those inputs
    error: BaseException | None = None
    raw: object = None            # the return value as it came


def call(fn, case, ex: Exercise) -> Outcome:
    """`fn` on fresh copies of the case's inputs (those in case.grad with requires_grad)."""
    inputs = [x.detach().clone().requires_grad_(i in case.grad) if torch.is_tensor(x) else x
              for i, x in enumerate(case.inputs)]
    names = tuple(ex.args[i] for i in case.grad)
    try:
        with torch.enable_grad():
            raw = fn(*inputs)
            one = len(ex.outputs) == 1
            outputs = (raw,) if one else tuple(raw) if isinstance(raw, (tuple, list)) else None
            first = outputs[0] if outputs else None
            grads = None
            if case.grad and torch.is_tensor(first) and first.requires_grad:
                grads = torch.autograd.grad(first.sum(), [inputs[i] for i in case.grad], allow_unused=True)
    except Exception as e:
        return Outcome(grad_args=names, error=e)
    return Outcome(outputs, grads, names, None, raw)


def _close(got, expected, tolerance) -> bool:
    rtol, atol = tolerance.get(str(expected.dtype).replace("torch.", ""), (1e-5, 1e-6))
    return bool(torch.isclose(got.detach().double(), expected.detach().double(), rtol, atol, equal_nan=True).all())


def differences(ex: Exercise, expected: Outcome, got: Outcome, only: tuple = (), detach: bool = True) -> list[str]:
    """What differs between two outcomes of one case, in words (empty: they agree). `only`: compare
    these outputs alone (and the gradient only when the first output is among them); detach=False
    leaves out whether the outputs that should be detached are."""
    n = len(ex.outputs)
    if got.outputs is None or len(got.outputs) != n:
        return [f"returns {_kind(got.raw)}; expected a tuple of {n}: ({', '.join(ex.outputs)})"]
    out = []
    for name, g, e in zip(ex.outputs, got.outputs, expected.outputs):
        if only and name not in only:
            continue
        if not torch.is_tensor(g):
            out.append(f"{name} is {_kind(g)}, not a tensor")
        elif tuple(g.shape) != tuple(e.shape):
            out.append(f"{name} has shape {tuple(g.shape)}, expected {tuple(e.shape)}")
        elif g.dtype != e.dtype:
            out.append(f"{name} is {g.dtype}, expected {e.dtype}: the output's dtype follows the inputs'")
        elif not _close(g, e, ex.tolerance):
            out.append(f"{name} differs")
        elif detach and name in ex.detached and g.requires_grad != e.requires_grad:
            out.append(f"{name} carries a gradient: the library returns it detached (.detach())" if g.requires_grad
                       else f"{name} carries no gradient, while the library's does")
    if out or (only and ex.outputs[0] not in only) or expected.grads is None:
        return out
    if got.grads is None:
        return [f"{ex.outputs[0]} carries no gradient: it must be differentiable (no .item(), .detach(), "
                "torch.no_grad(), or new tensors built from its numbers)"]
    return [f"the gradient of {ex.outputs[0]}.sum() w.r.t. {name} differs" for name, g, e in _gradients(expected, got)
            if not _close(g, e, ex.tolerance)]


def _gradients(expected: Outcome, got: Outcome):
    """(input name, got's gradient, expected's gradient); no gradient at all (None) reads as zeros."""
    for name, g, e in zip(got.grad_args, got.grads, expected.grads):
        ref = e if e is not None else g
        if ref is None:
            continue
        yield name, g if g is not None else torch.zeros_like(ref), e if e is not None else torch.zeros_like(ref)


def _kind(x) -> str:
    if torch.is_tensor(x):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}"
    return f"a {type(x).__name__}"


# --- grading ---------------------------------------------------------------------------------------
def grade_function(ex: Exercise, fn, path=None, **options) -> Verdict:
    """Grade `fn` (the learner's, from `path`) on every case of `ex`."""
    if ex.grade is not None:
        return ex.grade(ex, fn, path, **options)
    with one_thread():  # the cases are a few numbers each: grading is several times faster on one thread
        return _grade_cases(ex, fn, path)


def _grade_cases(ex: Exercise, fn, path) -> Verdict:
    cases = ex.cases()
    expected = [call(ex.solution, c, ex) for c in cases]
    got = []
    for i, case in enumerate(cases):
        o = call(fn, case, ex)
        if o.error is not None:
            return _error_verdict(ex, o.error, path, i, case, len(cases))
        got.append(o)
    failing = [i for i in range(len(cases)) if differences(ex, expected[i], got[i])]
    if not failing:
        return Verdict(ex.name, "right", f"{ex.name}: right on all {len(cases)} cases (values, shapes, dtypes"
                       + (", detached outputs" if ex.detached else "") + ", gradients where they matter).\n"
                       f"  The library's own: {ex.solution_at}.")
    mistakes = [m for m in ex.mistakes if matches(ex, m, cases, got)]
    i = failing[0]
    return Verdict(ex.name, "wrong", _wrong_report(ex, cases[i], i, len(cases), expected[i], got[i], mistakes),
                   [m.name for m in mistakes])


def matches(ex: Exercise, mistake, cases, got) -> bool:
    """Does the answer behave like `mistake` on every case (on the outputs the mistake is about)?"""
    for case, g in zip(cases, got):
        m = call(mistake.fn, case, ex)
        # whether outputs are detached counts only for a mistake about that (one that leaves them attached)
        about_detaching = m.outputs is not None and any(
            torch.is_tensor(o) and o.requires_grad for n, o in zip(ex.outputs, m.outputs) if n in ex.detached)
        if m.error is not None or differences(ex, m, g, mistake.outputs, about_detaching):
            return False
    return True


def raised(ex: Exercise, error: BaseException, path, context: str, details: str = "") -> Verdict:
    """The verdict on a learner's function that raised: "not written yet" for the stub's
    NotImplementedError, else the error and where in their file it happened."""
    if isinstance(error, NotImplementedError):
        return Verdict(ex.name, "not written", f"{ex.name}: {NOT_WRITTEN} ({where(error, path)} raises "
                       f"NotImplementedError): write {ex.function}, then grade it again.")
    return Verdict(ex.name, "error", f"{ex.name}: your {ex.function} raised {type(error).__name__} at "
                   f"{where(error, path)} {context}: {error}" + (f"\n{details}" if details else ""))


def _error_verdict(ex, error, path, i, case, n) -> Verdict:
    return raised(ex, error, path, f"on case {i + 1} of {n}, \"{case.title}\"", _show_inputs(ex, case))


def _wrong_report(ex, case, i, n, expected: Outcome, got: Outcome, mistakes) -> str:
    lines = [f"{ex.name}: wrong on case {i + 1} of {n}, \"{case.title}\" (the smallest that fails)",
             _show_inputs(ex, case)]
    if got.outputs is not None and len(got.outputs) == len(ex.outputs):
        for name, e, g in zip(ex.outputs, expected.outputs, got.outputs):
            digits = _digits(e, g)
            lines.append(f"  {name}:\n    expected {_indent(show(e, digits), 13)}\n    got      {_indent(show(g, digits), 13)}")
    lines += [f"  - {d}" for d in differences(ex, expected, got)]
    if expected.grads is not None and got.grads is not None:
        for name, g, e in _gradients(expected, got):
            if not _close(g, e, ex.tolerance):
                lines.append(f"  gradient of {ex.outputs[0]}.sum() w.r.t. {name}:\n    expected {_indent(show(e), 13)}"
                             f"\n    got      {_indent(show(g), 13)}")
    for m in mistakes:
        lines += [f"A classic mistake: {m.name}", f"  {m.why}", f"  Read: {CELLS[m.cell].where()}"]
    if not mistakes:
        lines.append("No catalogued classic mistake matches it on every case: compare expected and got above, "
                     f"and reread {ex.cell_where()}.")
    return "\n".join(lines)


def _show_inputs(ex, case) -> str:
    width = max(len(a) for a in ex.args)
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
