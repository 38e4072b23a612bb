"""Exercises: the learner writes the pieces, a grader checks them against the library.

`python -m minidpo grade --start DIR` writes one stub a function into a folder the learner owns;
`python -m minidpo grade NAME` grades one (`--train` then runs it inside the real `--fast` stage that
uses it, beside the library's run of the same seed); `grade class ROOT` grades a class into a
gradebook. The learner's code runs in a child process (child.py); the grader compares and decides.
The catalogue lists the exercises in lesson order; the lessons they point to are in one table
(`spec.CELLS`). Only the CLI imports this room (and `python -m minidpo`, to start the child early).
"""
