"""minidpo installed like any package: the wheel carries every module and the files read at run time,
and a stage runs, and the exercises are written and graded, from another folder in a fresh venv that
cannot see the checkout.

No network: the wheel is built from a copy of the sources without build isolation (setuptools is in
this venv), installed with --no-index --no-deps, and the fresh venv borrows torch, numpy, tiktoken
and matplotlib from this venv through a .pth line (a plain path: the .pth files there, this venv's
editable install of minidpo among them, are not run)."""
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the slow tier: `python -m pytest -q -m slow`

import minidpo
from minidpo.exercises.catalogue import file_name, find

PACKAGE = Path(minidpo.__file__).resolve().parent
ROOT = PACKAGE.parent


def test_a_wheel_installed_elsewhere_runs_a_stage_from_any_folder(tmp_path):
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info, which the checkout must not get
    shutil.copytree(PACKAGE, src / "minidpo", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    shutil.copytree(ROOT / "data", src / "data")
    shutil.copy(ROOT / "pyproject.toml", src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(tmp_path / "dist"),
                          str(src)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("minidpo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert modules - names == set()  # every module of the checkout, every subpackage
    assert {"minidpo/assets/tokenizer.tiktoken", "minidpo/assets/example_prefs.jsonl"} <= names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run(pip + ["--python", str(python), "install", "--no-deps", "--no-index", "--no-compile", str(wheel)],
                   check=True, capture_output=True, cwd=tmp_path)
    (new_site,) = (env_dir / "lib").glob("python*/site-packages")
    borrowed = [p for p in site.getsitepackages() if (Path(p) / "torch").is_dir()]
    (new_site / "borrowed.pth").write_text("\n".join(borrowed) + "\n")  # torch & co, not minidpo

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    code = ("import sys, minidpo, minidpo.tokenizer as t; print(minidpo.__file__); print(t.DEFAULT_MERGES); "
            "from minidpo.harness.cli import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.run([str(python), "-c", code, "sft", "--fast", "--steps", "5", "--quiet", "--out", "run"], capture_output=True,
                       text=True, cwd=elsewhere, env={**env, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    where, merges = p.stdout.splitlines()[:2]
    assert Path(where).is_relative_to(new_site) and Path(merges) == new_site / "minidpo" / "assets" / "tokenizer.tiktoken"
    assert "SFT: held-out loss" in p.stdout and (elsewhere / "run" / "sft.pt").is_file()

    # the exercises from the wheel: stubs written into a folder the learner owns, graded there
    dpo_file = f"mine/{file_name(find('dpo-loss'))}"
    code = ("import sys; from minidpo.harness.cli import main\n"
            "codes = [main(['grade', '--start', 'mine']), main(['grade', 'dpo-loss', '--dir', 'mine'])]\n"
            f"open({dpo_file!r}, 'w').write('from minidpo.losses import dpo_loss\\n')\n"
            "codes.append(main(['grade', 'dpo-loss', '--dir', 'mine']))\n"
            "print('exit codes', codes)\n")
    p = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=elsewhere,
                       env={**env, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr[-2000:]
    assert "dpo-loss: not written yet" in p.stdout and "dpo-loss: right on all" in p.stdout
    assert p.stdout.splitlines()[-1] == "exit codes [0, 1, 0]"
