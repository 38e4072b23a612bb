"""scripts/gpu_check.sh, where no GPU is: one clean line and exit 0; and its DPO-step Python run on
the CPU with tiny shapes (GPU_CHECK_DRY=1), whose arithmetic for GPT-2 small and medium must be
docs/speed.md's (its section "A GPU")."""
import os
import re
import subprocess
import sys
from pathlib import Path

import minidpo

ROOT = Path(minidpo.__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def check(tmp_path, **env):
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable, "GPU_CHECK_OUT": str(tmp_path / "out"),
                               "OMP_NUM_THREADS": "1", **env})


def test_without_cuda_the_gpu_check_says_so_in_one_line(tmp_path):
    p = check(tmp_path, CUDA_VISIBLE_DEVICES="")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.startswith("gpu_check: nothing to check: no CUDA device here (torch ") and p.stdout.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_dpo_step_of_the_gpu_check_runs_and_its_arithmetic_is_the_docs(tmp_path):
    p = check(tmp_path, GPU_CHECK_DRY="1")
    assert p.returncode == 0, p.stderr[-2000:]
    steps = re.findall(r"DPO step, .*, (without checkpointing|with gradient checkpointing): \d+ ms, ([\d.]+)k tokens/s",
                       p.stdout)
    assert [s[0] for s in steps] == ["without checkpointing", "with gradient checkpointing"]
    assert all(float(s[1]) > 0 for s in steps) and p.stdout.rstrip().endswith("gpu_check: done")
    got = dict(re.findall(r"GPT-2 (small|medium) \(\d+ M\), 16 x 512 tokens: ([\d.]+ GB, [\d.]+) GB", p.stdout))
    page = (ROOT / "docs" / "speed.md").read_text(encoding="utf-8")
    section = page[page.index("## A GPU"):]
    section = section[:section.index("\n## ")] if "\n## " in section else section
    small, medium = (float(got[k].split(" GB, ")[0]) for k in ("small", "medium"))
    medium_low = float(got["medium"].split(" GB, ")[1])
    for number in (small, medium, medium_low):
        assert f"≈ {number:.1f} GB" in section, number
