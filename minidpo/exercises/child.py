"""The learner's code runs here, in a child process; the grader's parent process only compares.

Why a child: a learner's file is Python, and it may call sys.exit, os._exit, loop forever, print,
raise KeyboardInterrupt or run out of memory. In a child each of these ends ONE exercise with an
`error` verdict, and never the grader: the parent waits for each exercise under a time limit, kills
the child on a time-out or after it died, and starts another for the exercises left. The child
cannot write into the parent's output: its stdout and stderr go to a file the parent reads back
(what the learner printed, shown apart), and its stdin reads nothing.

Both ends of the pipe are in this file. The parent sends a job (a file, the function to call, each
case's inputs); the child sends back, per case, what the function returned, its gradients and its
inputs as they were after the call. The frames are torch.save'd plain data (tensors, numbers,
strings, lists, dicts), read with weights_only=True: nothing a learner returns is unpickled as an
object in the parent.

This is NOT a sandbox: the learner's code can read and write the lecturer's files like any program
the lecturer runs. Grade untrusted folders in a container or a throwaway account.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import io
import os
import queue
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from .launch import take

STARTUP_LIMIT = 120.0          # seconds for a child to start (Python, then `import torch`; slow on a busy machine)
MEMORY_HEADROOM = 2**30        # bytes the learner's code may allocate beyond what the child holds after its imports
OUTPUT_LIMIT = 16 * 2**20      # bytes the learner's code may print (a longer print fails inside their code)
SHOWN = 4000                   # characters of what the learner printed that a report shows


# --- what both ends share -------------------------------------------------------------------------
@dataclass
class Raised:
    """An exception the learner's code raised, as text (it crosses the pipe)."""
    type: str
    message: str
    where: str            # file:line of the deepest frame in the learner's file (else the file)
    code: str = ""        # SystemExit's argument, as written


@dataclass
class Outcome:
    outputs: tuple | None = None  # what the function returned, as a tuple
    grads: tuple | None = None    # d(sum of the first output)/d(each grad input); None: no gradient
    grad_args: tuple = ()         # the names of those inputs (filled by the parent)
    error: Raised | None = None
    kind: str = ""                # what it returned, in words ("a tuple of 2")
    inputs: tuple = ()            # the inputs as they were after the call (a function must not change them)


class Foreign:
    """A returned value that is neither a tensor nor a plain number or string: its kind and its repr."""

    def __init__(self, kind: str, text: str):
        self.kind, self.text = kind, text

    def __repr__(self):
        return self.text


def kind(x) -> str:
    if isinstance(x, Foreign):
        return x.kind
    if torch.is_tensor(x):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}"
    return f"a {type(x).__name__}"


def where(error: BaseException, path) -> str:
    """file:line of the deepest frame of the traceback inside the learner's file (else the file)."""
    target = str(Path(path).resolve()) if path else None
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__)
             if target and str(Path(f.filename).resolve()) == target]
    if isinstance(error, SyntaxError) and target and error.filename and str(Path(error.filename).resolve()) == target:
        lines.append(error.lineno)
    return f"{path}:{lines[-1]}" if lines else str(path or "your function")


def raised(error: BaseException, path) -> Raised:
    message = error.msg if isinstance(error, SyntaxError) else str(error)
    code = repr(error.code) if isinstance(error, SystemExit) and error.code is not None else ""
    return Raised(type(error).__name__, message, where(error, path), code)


def call(fn, inputs, grad=(), n_outputs: int = 1, path=None, catch=Exception) -> Outcome:
    """`fn` on fresh copies of `inputs` (those at the positions `grad` with requires_grad). The child
    catches everything the learner's code can raise (BaseException); the parent, calling the library
    and the catalogued mistakes, only Exception (a lecturer's Ctrl-C stays a Ctrl-C)."""
    inputs = [x.detach().clone().requires_grad_(i in grad) if torch.is_tensor(x) else x for i, x in enumerate(inputs)]

    def after():
        return tuple(x.detach().clone() if torch.is_tensor(x) else x for x in inputs)
    try:
        with torch.enable_grad():
            raw = fn(*inputs)
            outputs = (raw,) if n_outputs == 1 else tuple(raw) if isinstance(raw, (tuple, list)) else None
            first = outputs[0] if outputs else None
            grads = None
            if grad and torch.is_tensor(first) and first.requires_grad:
                grads = torch.autograd.grad(first.sum(), [inputs[i] for i in grad], allow_unused=True)
    except catch as e:
        return Outcome(error=raised(e, path), inputs=after())
    return Outcome(outputs, grads, (), None, kind(raw), after())


def load_module(path):
    """The learner's file as a module (its top-level code runs here, once)."""
    path = Path(path)
    name = "minidpo_learner_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect.getsource and dataclasses look modules up here
    spec.loader.exec_module(module)
    return module


def defined_functions(module) -> list[str]:
    """The functions a learner's file defines itself (for "it defines: ...")."""
    return sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__)


MAGIC = b"minidpo\n"


def send(stream, obj) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    stream.write(MAGIC + len(data).to_bytes(8, "little") + data)
    stream.flush()


def receive(stream):
    """The next frame, or None at the end of the stream. ValueError when it is not one of ours."""
    head = stream.read(16)
    if not head:
        return None
    if len(head) < 16 or head[:8] != MAGIC:
        raise ValueError("the pipe carried something that is not a frame (did the learner's code write to it?)")
    data = stream.read(int.from_bytes(head[8:], "little"))
    return torch.load(io.BytesIO(data), weights_only=True)


# --- the child's end --------------------------------------------------------------------------------
def _portable(x):
    """A returned value as plain data for the pipe."""
    if torch.is_tensor(x):
        return {"tensor": x.detach().clone(), "requires_grad": x.requires_grad}
    if x is None or isinstance(x, (str, int, float, bool)):
        return {"value": x}
    return {"kind": kind(x), "text": repr(x)[:200]}


def _encode(o: Outcome) -> dict:
    return {"outputs": None if o.outputs is None else [_portable(x) for x in o.outputs], "kind": o.kind,
            "grads": None if o.grads is None else list(o.grads), "inputs": list(o.inputs),
            "error": None if o.error is None else vars(o.error)}


def grade_job(job: dict, started) -> dict:
    """Load the file, find the function, run it on every case (stopping at the first that raises)."""
    path, shown = Path(job["path"]), job["shown"]
    started(-1)
    try:
        module = load_module(path)
    except BaseException as e:  # noqa: B036 - sys.exit, KeyboardInterrupt ... at the top of the file: a verdict
        return {"load_error": vars(raised(e, shown))}
    fn = getattr(module, job["function"], None)
    if not callable(fn):
        return {"missing": defined_functions(module)}
    outcomes = []
    for i, (inputs, grad) in enumerate(job["cases"]):
        started(i)
        o = call(fn, inputs, grad, job["n_outputs"], shown, catch=BaseException)
        outcomes.append(_encode(o))
        if o.error is not None:
            break
    return {"outcomes": outcomes, "module": str(getattr(fn, "__module__", None))}


def _limit_resources() -> None:
    """Memory (address space) and printed output bounded, where the OS lets us (POSIX)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return
    pages = int(Path("/proc/self/statm").read_text().split()[0]) if Path("/proc/self/statm").exists() else 0
    held = pages * os.sysconf("SC_PAGE_SIZE") if pages else 0
    if held:
        resource.setrlimit(resource.RLIMIT_AS, (held + MEMORY_HEADROOM, resource.getrlimit(resource.RLIMIT_AS)[1]))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # printing past the limit raises OSError in their code
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def serve(mode: str, train_job=None) -> None:
    """The child's main loop: jobs in on the pipe that was stdin, replies out on the one that was
    stdout; the learner's stdout and stderr both go to what the parent gave as stderr. `mode`:
    grade (the cases of one exercise a job, memory and output bounded) or train (--train's run)."""
    jobs, replies = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # input() reads nothing
    os.dup2(2, 1)
    if mode == "train":  # train_child.py: the pipeline, imported only by a --train child
        run = train_job
    else:
        torch.set_num_threads(1)  # the cases are a few numbers each; a second thread only waits
        _limit_resources()
        run = lambda job: grade_job(job, lambda i: send(replies, ("case", i)))  # noqa: E731
    send(replies, ("ready",))
    while (job := receive(jobs)) is not None:
        send(replies, ("result", run(job)))


# --- the parent's end -------------------------------------------------------------------------------
@dataclass
class Reply:
    kind: str                 # "result", "time" (over the limit), "died" (the child ended), "start" (it never
                              # started), "garbled" (the pipe carried what is not a frame of ours)
    case: int | None = None   # the case it was on (-1: loading the file; None: before)
    result: dict | None = None
    returncode: int | None = None
    output: str = ""          # what the learner's code printed during this job


class Child:
    """One child process, started at once: its `import torch` overlaps the parent's own work.
    `relay`: a function called with each line the child prints (--train shows its progress live);
    without it, what the child prints is kept in a file and returned with each reply."""

    def __init__(self, relay=None):
        self.process, self.folder, self.capture = take("train" if relay else "grade", relay is not None)
        self.frames: queue.Queue = queue.Queue()
        self.ready = False
        threading.Thread(target=self._read, daemon=True).start()
        self.relay_thread = None
        if relay:
            self.relay_thread = threading.Thread(target=self._relay, args=(relay,), daemon=True)
            self.relay_thread.start()

    def _read(self):
        try:
            while (frame := receive(self.process.stdout)) is not None:
                self.frames.put(frame)
        except Exception as e:  # a broken frame: the child is of no more use
            self.frames.put(("garbled", str(e)))
        self.frames.put(None)

    def _relay(self, relay):
        for line in io.TextIOWrapper(self.process.stderr, encoding="utf-8", errors="replace"):
            relay(line)

    def _next(self, deadline):
        try:
            return self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return "time"

    def run(self, job: dict, limit: float) -> Reply:
        """Send `job`, wait for its result at most `limit` seconds (the child's start is not counted)."""
        if not self.ready:
            frame = self._next(time.monotonic() + STARTUP_LIMIT)
            if frame != ("ready",):
                output = self._printed(0)
                self.close()
                return Reply("start", output=output)
            self.ready = True
        start = self.capture.stat().st_size
        try:
            send(self.process.stdin, job)
        except OSError:  # it ended between two jobs
            return self._ended(None, start)
        deadline, case = time.monotonic() + limit, None
        while True:
            frame = self._next(deadline)
            if frame == "time":
                output = self._printed(start)
                self.close()
                return Reply("time", case, output=output)
            if frame is None:
                return self._ended(case, start)
            if frame[0] == "garbled":
                output = self._printed(start)
                self.close()
                return Reply("garbled", case, {"why": frame[1]}, output=output)
            if frame[0] == "case":
                case = frame[1]
            elif frame[0] == "result":
                return Reply("result", case, frame[1], output=self._printed(start))

    def _ended(self, case, start) -> Reply:
        output = self._printed(start)
        self.close()
        return Reply("died", case, returncode=self.process.returncode, output=output)

    def _printed(self, start: int) -> str:
        with open(self.capture, "rb") as f:
            f.seek(start)
            data = f.read(SHOWN + 1)
        text = data.decode("utf-8", errors="replace")
        return text if len(text) <= SHOWN else text[:SHOWN] + "\n... (cut: it printed more)"

    def close(self) -> None:
        """End the child (and anything it started), wait for it, remove its folder. Idempotent."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL) if hasattr(os, "killpg") else self.process.kill()
            except ProcessLookupError:
                pass
        self.process.wait()
        if self.relay_thread is not None:
            self.relay_thread.join(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self.folder.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


if __name__ == "__main__":
    serve(sys.argv[1])
