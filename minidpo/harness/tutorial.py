"""What every lesson starts with: the run folder it works in, from its command line.

`tutorial_run("NN: title")` reads `--fast`, `--out`, `--seed` and `--device` (a notebook kernel's own
arguments are ignored), claims the folder and returns the `Run`; in a notebook without a GPU it
picks the tiny settings, since a lesson there must finish while the learner watches.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from .runfolder import Run


def in_notebook() -> bool:
    """Running inside a Jupyter / IPython kernel (a notebook), not as a script?"""
    return "ipykernel" in sys.modules


def tutorial_run(description: str):
    """The Run a tutorial script works in: `--fast`, `--out`, `--seed`, `--device` from the command
    line (unknown arguments, such as a notebook kernel's, are ignored). In a notebook without a GPU
    the tiny settings are the default (MINIDPO_FULL=1 asks for the full run)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=None, help="run folder (default: runs/tutorial, or runs/tutorial-fast)")
    p.add_argument("--fast", action="store_true", help="tiny configs, seconds instead of minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args, _ = p.parse_known_args()
    if in_notebook() and not torch.cuda.is_available() and os.environ.get("MINIDPO_FULL") != "1":
        args.fast = True
    out = args.out or ("runs/tutorial-fast" if args.fast else "runs/tutorial")
    run = Run.create(out, seed=args.seed, fast=args.fast, device=args.device)
    run.claim_folder()
    return run
