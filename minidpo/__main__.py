import sys

if sys.argv[1:2] == ["grade"]:  # the grader's child process starts now: its `import torch` overlaps ours
    from .exercises.launch import start_early
    start_early()

from .harness.cli import main  # noqa: E402

sys.exit(main())
