"""The `--train` child's entry point (`python -m minidpo.exercises.train_child train`, started by
launch.py): the catalogue, the pipeline and the learner's file are loaded in this process only, and
child.py's loop serves train.py's jobs. Its own module, so that neither child.py nor train.py imports
the catalogue that imports them."""
import sys

from .catalogue import find
from .child import serve
from .train import train_job

if __name__ == "__main__":
    serve(sys.argv[1], lambda job: train_job(job, find))
