import sys

if sys.argv[1:2] == ["grade"] and not {"--list", "--start", "-h", "--help"} & set(sys.argv):
    from .exercises.launch import start_early  # the grader's child process starts now: its `import torch`
    start_early()                              # overlaps this process's own

from .harness.cli import main  # noqa: E402

sys.exit(main())
