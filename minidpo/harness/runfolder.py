"""The run folder: where every stage and study of one configuration reads and writes its files.

A folder holds ONE configuration (tiny or default configs, seed, dtype); another is refused, never
relabelled. Inside it each stage is computed through `Run.cached`, which reuses the stage's outputs
only when its provenance key matches (see provenance.py) and otherwise recomputes and records them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, load_gpt, read_json, remove_stale_temporaries, write_json
from ..distributed import barrier
from ..tokenizer import Tokenizer
from ..training import PeakMemory, pick_device, resolve_dtype, seed_everything
from . import provenance
from .stages import STAGES, ensure

EVAL_SEED_OFFSET = 100    # the SFT baseline's samples on the held-out films: seed + 100 (eval_sft.json)
POLICY_SEED_OFFSET = 200  # every evaluated policy's: seed + 200, independent of the baseline's samples


def _recorded_tokenizer(out: Path) -> dict | None:
    f = out / "run_config.json"
    try:
        recorded = read_json(f).get("tokenizer") if f.is_file() else None
    except CheckpointError:
        return None
    return recorded if isinstance(recorded, dict) and {"path", "kind"} <= set(recorded) else None


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked; the message says why and what to do."""


@dataclass
class Run:
    out: Path
    seed: int = 0
    fast: bool = False
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype | None = None
    force: bool = False
    quiet: bool = False
    tok: Tokenizer = field(default_factory=Tokenizer.load)
    computed: list = field(default_factory=list)  # what this process computed, in order ...
    reused: list = field(default_factory=list)    # ... and what it found current and reused

    @classmethod
    def create(cls, out, seed=0, fast=False, device="auto", dtype="auto", force=False, quiet=False,
               tokenizer=None, tokenizer_kind: str = "minidpo"):
        """A run in folder `out`. The tokenizer: the given ranks file, else the one the folder
        was made with (`import-gpt2` records a GPT-2 tokenizer in run_config.json), else ours."""
        dev = pick_device(device)
        recorded = _recorded_tokenizer(Path(out))
        if tokenizer is None and recorded:
            tokenizer, tokenizer_kind = recorded["path"], recorded["kind"]
        tok = Tokenizer.load(tokenizer, tokenizer_kind) if tokenizer else Tokenizer.load()
        return cls(Path(out), seed, fast, dev, resolve_dtype(dtype, dev), force, quiet, tok)

    def path(self, name: str) -> Path:
        return self.out / name

    @property
    def dtype_name(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def folder_config(self) -> dict:
        """What must be the same for two stages to share a folder."""
        return {"fast": self.fast, "seed": self.seed, "dtype": self.dtype_name}

    def config(self) -> dict:
        config = {"out": str(self.out), **self.folder_config(), "device": str(self.device)}
        if self.tok.kind != "minidpo":
            config["tokenizer"] = {"path": str(Path(self.tok.path).resolve()), "kind": self.tok.kind}
        return config

    def claim_folder(self) -> None:
        """Make the folder (or check it holds this configuration), and remove temporary files that
        a killed run left behind. `--force` redoes work; it never relabels a folder."""
        if self.out.exists() and not self.out.is_dir():
            raise RunFolderError(f"--out {self.out} is a file, not a folder: choose another --out")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            parent = next(p for p in self.out.parents if p.exists())
            raise RunFolderError(f"--out {self.out}: {parent} is a file, so no folder can be made "
                                 "under it; choose another --out") from None
        from ..distributed import is_main
        for p in remove_stale_temporaries(self.out) if is_main() else ():  # (another rank's are in flight)
            print(f"removed {p} (a temporary file left by an interrupted run)")
        f = self.path("run_config.json")
        if not f.is_file():
            write_json(f, self.config())
            return
        try:
            old = read_json(f)
        except CheckpointError as e:
            raise RunFolderError(f"{e}; this file only names the folder's configuration: delete it, "
                                 "or use another --out") from None
        mine = self.folder_config()
        theirs = {k: old.get(k) for k in mine}
        if theirs != mine:
            words = lambda c: ", ".join(f"{k}={v}" for k, v in c.items())
            raise RunFolderError(f"{self.out} holds a run with {words(theirs)}; this one has {words(mine)}. "
                                 "A folder holds one configuration: use another --out, or delete the folder")

    # --- computing through provenance ------------------------------------------------------------
    def key(self, config: dict, inputs: dict, code: str) -> dict:
        return provenance.make_key({**config, "seed": config.get("seed", self.seed)}, self.dtype_name,
                                   {**inputs, "tokenizer": self.tok.fingerprint}, code)

    def cached(self, name: str, config: dict, inputs: dict, compute, outputs=None, code: str | None = None,
               folder=None, announce: bool = True) -> bool:
        """Reuse `name`'s outputs if its key (config, seed, dtype, input files, code) is unchanged
        and its outputs are untouched; otherwise compute() and record them. Returns True when
        computed. `inputs`: role -> file Path (hashed) or a hash string. `outputs`: file names
        inside `folder` (default: the stage table's), or a function returning the paths written.
        `code`: the module that does the work (default: the stage table's); it and every minidpo
        module it imports are part of the key, so an edited loss makes DPO stale. `announce=False`
        (the many units of a study, which print their own progress) prints nothing."""
        folder = Path(folder or self.out)
        stage = STAGES.get(name)
        outputs = outputs if outputs is not None else stage.outputs
        code = code or stage.code_module
        key = self.key(config, inputs, code)
        forced = self.force and name not in self.computed  # --force redoes each unit once per command
        why = "--force" if forced else provenance.why_stale(folder, name, key)
        say = (lambda text: print(text, flush=True)) if announce else (lambda text: None)
        if why is None:
            if name not in self.reused:
                say(f"== {name}: reusing its outputs (inputs unchanged; --force redoes it)")
                self.reused.append(name)
            return False
        say(f"== {name}: start" + ("" if why == "no provenance record" else f" (recomputing: {why})"))
        seed_everything(self.seed)
        t0 = time.perf_counter()
        with PeakMemory(self.device) as mem:
            compute()
        barrier()  # under torchrun: rank 0 has written every output before anyone reads one
        seconds = time.perf_counter() - t0
        # file names are inside `folder`; Path objects are used as they are (relative to the cwd)
        paths = outputs() if callable(outputs) else [o if isinstance(o, Path) else folder / o for o in outputs]
        sources = {r: p for r, p in inputs.items() if isinstance(p, Path)}
        provenance.write_record(folder, name, key, paths, sources, seconds, str(self.device), mem.mb)
        barrier()
        self.computed.append(name)
        say(f"== {name}: done in {seconds:.1f}s" + (f", peak memory {mem.mb:.0f} MB" if mem.mb else ""))
        return True

    def inputs(self, name: str, **files) -> dict:
        """role -> path of each file stage `name` reads (the stage table's `reads`); `files`
        replaces some of them (a user's preference file, say)."""
        return {role: Path(files[role]) if files.get(role) else self.path(f)
                for role, f in STAGES[name].reads.items()}

    def is_current(self, name: str, config: dict, inputs: dict) -> bool:
        """Would stage `name`, computed now with `config` and `inputs`, be reused?"""
        key = self.key(config, inputs, STAGES[name].code_module)
        return provenance.why_stale(self.out, name, key) is None

    def study(self, name: str, compute, config: dict | None = None) -> dict:
        """A study of the stage table: bring what it needs up to date, then reuse or compute it
        (its key: the seed, the files it reads, its code, and `config`: whatever else decides it,
        such as the losses registered now). Returns its main JSON output."""
        stage = STAGES[name]
        ensure(self, *stage.needs)
        self.cached(name, config or {}, self.inputs(name), compute)
        return read_json(self.path(stage.outputs[0]))

    def record(self, name: str) -> dict | None:
        return provenance.read_record(self.out, name)

    def why_not_current(self, name: str) -> str | None:
        """None when stage `name`'s outputs are in the folder as it wrote them, from inputs that are
        unchanged since; otherwise why not, in words (for `stages.require`)."""
        if self.record(name) is None:
            first = self.path(STAGES[name].outputs[0])
            if not first.is_file():
                return f"has not run ({first} not found)"
            return (f"has no provenance record ({first} was not written by this version's {name} stage, "
                    "or its record is unreadable)")
        why = provenance.why_stale(self.out, name)
        return None if why is None else f"is out of date ({why})"

    def require(self, *names: str) -> None:
        """Check, without computing anything, that the outputs of `names` are in the folder as their
        stages wrote them (from inputs that are still there, unchanged). Otherwise a RunFolderError
        says what is missing or stale and which command makes it."""
        for name in names:
            why = self.why_not_current(name)
            if why is not None:
                raise RunFolderError(f"{self.out}: {name} {why}: run `{self.command(STAGES[name].command)}` first "
                                     f"(or `{self.command('run')}` for every stage)")

    def command(self, cmd: str) -> str:
        """The command line that runs `cmd` in this folder, for error messages."""
        return f"python -m minidpo {cmd} --out {self.out}" + (" --fast" if self.fast else "") + \
            (f" --seed {self.seed}" if self.seed else "")

    # --- what every stage and study needs ---------------------------------------------------------
    def settings(self, config_class, **overrides):
        """This run's configuration of a stage: the class's tiny `fast` one or its defaults, with
        the run's seed and the given overrides."""
        make = config_class.fast if self.fast else config_class
        return make(**{"seed": self.seed, **overrides})

    def eval_config(self) -> dict:
        """What decides an evaluation's samples: the held-out prompts and the sampling seeds (the
        SFT baseline's, and the one every evaluated policy is sampled with)."""
        return {"samples_per_film": 4 if self.fast else 8, "sample_seed": self.seed + EVAL_SEED_OFFSET,
                "policy_sample_seed": self.seed + POLICY_SEED_OFFSET}

    def load_policy(self, name):
        """A GPT checkpoint of this run: a file name inside the folder, or a Path used as given."""
        path = name if isinstance(name, Path) else self.path(name)
        return load_gpt(path, self.device, vocab_size=self.tok.vocab_size)[0].eval()

    def eval_prompts(self) -> list[str]:
        from ..evaluate import eval_prompts
        return eval_prompts(self.eval_config()["samples_per_film"])

    def sft_gold(self) -> list[float]:
        """Gold rewards of the SFT baseline's samples (the other side of every win rate)."""
        return read_json(self.path("eval_sft.json"), required=("gold",))["gold"]

    def evaluate(self, policy, ref=None, baseline: bool = True, coupled: bool = False) -> dict:
        """`policy` sampled on the held-out films and scored: gold, win rate against the SFT
        baseline's cached samples (same prompts), KL to `ref` (default: the SFT model), fluency ...
        The policy is sampled with its own seed (POLICY_SEED_OFFSET), independently of the
        baseline's samples (EVAL_SEED_OFFSET), so `win_rate_vs_sft` is P[r*(y_π) > r*(y_SFT)] for
        independent draws, ties ½: the DPO paper's win rate. `coupled=True` samples the policy with
        the baseline's own seed instead (common random numbers: less variance for a policy near
        SFT, but it then repeats SFT's samples and ties); its numbers are named
        `win_rate_vs_sft_coupled` and `ties_vs_sft_coupled`, never the win rate. `baseline=False`
        evaluates the baseline itself (eval_sft.json): no win rate."""
        from ..evaluate import evaluate_policy
        ref = ref if ref is not None else self.load_policy("sft.pt")
        seed = self.seed + (EVAL_SEED_OFFSET if coupled or not baseline else POLICY_SEED_OFFSET)
        stats = evaluate_policy(policy, ref, self.tok, self.eval_prompts(), seed=seed,
                                sft_gold=self.sft_gold() if baseline else None, dtype=self.dtype)
        if coupled and baseline:
            for key in ("win_rate_vs_sft", "ties_vs_sft"):
                stats[f"{key}_coupled"] = stats.pop(key)
        return stats
