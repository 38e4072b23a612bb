"""A learner's code runs in a child process and never decides its grade: whatever a file does —
sys.exit in the function or at its top, os._exit, an endless loop, KeyboardInterrupt, running out of
memory, printing — `grade NAME` ends with a verdict that names the cause (exit code 1), and
`grade all --json` still parses, marks that exercise `error` and grades the others. What the
learner printed is shown apart (a field of the JSON), never mixed into the grader's output."""
import contextlib
import io
import json
import sys

import pytest

from minidpo.exercises.catalogue import EXERCISES, file_name, find
from minidpo.harness.cli import main

MISBEHAVING = {  # exercise -> (the learner's file, what the verdict must say, the cause in a gradebook cell)
    "dpo-loss": ("""import sys
import torch.nn.functional as F

def dpo_loss(pc, pr, rc, rr, beta):
    if len(pc) > 1:
        sys.exit(0)
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))), (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()
""", "your dpo_loss called sys.exit(0) at {file}:6 on case 4 of 5", "sys.exit"),
    "bradley-terry-loss": ("""import sys
sys.exit()
""", "{file}:2: the file called sys.exit() while loading", "sys.exit"),
    "reinforce-loss": ("""import os

def reinforce_loss(seq_logps, advantages):
    os._exit(0)
""", "the process running your reinforce_loss ended with exit code 0 on case 1 of 4", "os._exit"),
    "gae": ("""def gae(rewards, values, mask, gamma, lam):
    while True:
        pass
""", "your gae did not finish within the time limit of 1 s, on case 1 of 4", "time limit"),
    "group-advantages": ("""def group_advantages(rewards):
    raise KeyboardInterrupt
""", "your group_advantages raised KeyboardInterrupt at {file}:2 on case 1 of 4", "KeyboardInterrupt"),
}
if sys.platform == "linux":  # the child's address space is limited where the OS enforces it
    MISBEHAVING["conservative-dpo-loss"] = ("""import torch

def conservative_dpo_loss(h, beta, label_smoothing):
    return torch.empty(2**31, dtype=h.dtype)  # 8 GiB in float32: more than the child may hold
""", "your conservative_dpo_loss ran out of memory at {file}:4 on case 1 of 5", "out of memory")

PRINTS = """import os
import torch

print("loading my file")
os.write(1, b"written to file descriptor 1\\n")

def optimal_policy(ref_logp, reward, beta):
    print("called with", tuple(ref_logp.shape))
    scores = ref_logp + reward / beta
    log_z = torch.logsumexp(scores, dim=-1)
    return scores - log_z[:, None], log_z
"""


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["grade", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", sorted(MISBEHAVING))
def test_grade_name_gives_a_verdict_that_names_the_cause(tmp_path, name):
    text, says, _ = MISBEHAVING[name]
    path = tmp_path / file_name(find(name))
    path.write_text(text)
    code, out, err = cli(name, "--dir", tmp_path, "--time-limit", 1)
    assert (code, err) == (1, ""), out + err
    assert out.startswith(f"{name}: " + says.format(file=path)), out


def test_grade_all_marks_each_error_and_grades_the_others(tmp_path, own):
    for ex in EXERCISES:
        text = (MISBEHAVING[ex.name][0] if ex.name in MISBEHAVING else PRINTS if ex.name == "optimal-policy"
                else own[ex.name])
        (tmp_path / file_name(ex)).write_text(text)
    code, out, err = cli("all", "--dir", tmp_path, "--json", "--time-limit", 1)
    table = json.loads(out)  # nothing the learner printed is mixed in
    rows = {r["exercise"]: r for r in table["exercises"]}
    assert (code, err) == (1, "") and len(rows) == len(EXERCISES)
    for name, (_, says, cause) in MISBEHAVING.items():
        path = tmp_path / file_name(find(name))
        assert (rows[name]["status"], rows[name]["cause"], rows[name]["cell"]) == ("error", cause, f"error ({cause})")
        assert rows[name]["message"].startswith(f"{name}: " + says.format(file=path)), rows[name]["message"]
    others = [r for name, r in rows.items() if name not in MISBEHAVING]
    assert [r["status"] for r in others] == ["right"] * len(others) and table["right"] == len(others)
    printed = rows["optimal-policy"]["output"]
    assert printed == "loading my file\nwritten to file descriptor 1\n" + "called with (1, 2)\n" * 2 + \
        "called with (2, 3)\ncalled with (2, 4)\n"
    assert all(r["output"] == "" for name, r in rows.items() if name != "optimal-policy")


def test_what_a_learner_prints_is_shown_under_its_own_heading(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(PRINTS)
    code, out, err = cli("optimal-policy", "--file", path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    at = lines.index(f"What {path} printed while graded (stdout and stderr):")
    assert out.startswith("optimal-policy: right on all 4 cases") and "called" not in "".join(lines[:at])
    assert lines[at + 1:at + 3] == ["  | loading my file", "  | written to file descriptor 1"]
    path.write_text(PRINTS.replace("reward / beta", "reward * beta"))  # now wrong: the verdict still comes first
    code, out, err = cli("optimal-policy", "--file", path)
    assert code == 1 and out.startswith("optimal-policy: wrong on case") and "A classic mistake: beta-multiplies" in out
    assert out.index("A classic mistake") < out.index(f"What {path} printed")


def test_input_reads_nothing_and_the_learner_cannot_reach_the_graders_stdin(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("def reinforce_loss(seq_logps, advantages):\n    return float(input())\n")
    code, out, _ = cli("reinforce-loss", "--file", path)
    assert code == 1 and out.startswith(f"reinforce-loss: your reinforce_loss raised EOFError at {path}:2 on case 1")


@pytest.mark.skipif(sys.platform != "linux", reason="finds the pipe through /proc")
def test_a_function_that_writes_into_the_graders_pipe_is_an_error(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("""import os

def reinforce_loss(seq_logps, advantages):
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd > 2 and os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
            try:
                os.write(fd, b"not a frame of the grader's, at all")
            except OSError:
                pass
    return -(advantages.detach() * seq_logps).mean()
""")
    code, out, _ = cli("reinforce-loss", "--file", path)
    assert code == 1 and out.startswith("reinforce-loss: the process running your reinforce_loss on case 1 of 4"), out
    assert "wrote into the grader's pipe" in out
