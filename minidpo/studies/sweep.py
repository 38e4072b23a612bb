"""Policies trained at several β and seeds, shared by the critics' studies (diversity, failure modes,
online DPO, over-optimisation) and some lessons.

`trained(run, method, beta, ...)` returns the final checkpoint of DPO, RLHF (REINFORCE on the run's
reward model) or PPO (on the same reward model) trained from the run's SFT model with that β and
otherwise default settings: a provenance-keyed unit in RUN/sweeps/ (`run.cached`), trained once,
reused while its settings and input files are unchanged. The pipeline's own policy is used when it
was trained with exactly these settings on exactly these files.

`along_training(run, method, beta, seed, ...)` trains the same on one seed's data (`data`: the
seed's own preference pairs and reward model, the Figure 2 study's data units; the run's seed is
the pipeline's own files) with that seed, and evaluates the policy at `CHECKPOINTS` fractions of
training and at the end. It returns those points (gold reward, KL, fluency, entropy, unique
responses ... on the held-out films), which is what a comparison at matched KL needs:

- `matched(a, b, start)`: two methods' points, seed by seed, each read on its frontier (the upper
  concave hull of its points and the SFT model, `harness.compare.frontier`) at the same KL (by
  default the largest KL both reach in that seed), and the paired differences of gold reward and
  fluency over the seeds (`harness.compare.paired`: mean, 95 % interval, verdict).
- `along(points, start, kl, key)`: a measure (entropy, unique fraction) of one run at the KL it
  passes on its way, read between the two checkpoints around it (a KL-matched checkpoint).
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from .. import world
from ..checkpoint import read_json, write_json
from ..dpo import DPOConfig, train_dpo
from ..harness import compare as C
from ..ppo import PPOConfig, train_ppo
from ..rlhf import RLHFConfig, train_rlhf
from . import frontier as F, units as U

CONFIGS = {"dpo": DPOConfig, "rlhf": RLHFConfig, "ppo": PPOConfig}
RL_TRAINERS = {"rlhf": train_rlhf, "ppo": train_ppo}
N_SEEDS = 3      # every comparison the critics' lessons conclude from is paired over these seeds
FAST_SEEDS = 2   # --fast: a smoke run still pairs over more than one seed
CHECKPOINTS = U.CHECKPOINTS  # evaluated fractions of training (and the end), as in the Figure 2 study
RL_WINDOW = 10   # an RL point's training-sample rewards: the mean of this many steps up to it


def folder(run) -> Path:
    return run.out / "sweeps"


def _unit_name(method: str, beta: float, overrides: dict) -> str:
    return f"{method}_beta{beta}" + "".join(f"_{k}{v}" for k, v in sorted(overrides.items()))


def trained(run, method: str, beta: float, **overrides) -> Path:
    """The final checkpoint of `method` ("dpo", "rlhf" or "ppo") trained at `beta` (and `overrides`)."""
    if method not in CONFIGS:
        raise ValueError(f"method must be one of {', '.join(CONFIGS)}, not {method!r}")
    cfg = replace(run.settings(CONFIGS[method]), beta=beta, **overrides)
    inputs = run.inputs(method)
    key = cfg.key() if method == "dpo" else asdict(cfg)
    if run.is_current(method, key, inputs):
        return run.path(f"{method}.pt")
    name = _unit_name(method, beta, overrides)
    out = folder(run)

    def go():
        if method == "dpo":
            train_dpo(cfg, run.tok, inputs["sft"], inputs["train_data"], inputs["val_data"], out, run.device,
                      run.dtype, quiet=True, out_name=name)
        else:
            RL_TRAINERS[method](cfg, run.tok, inputs["sft"], inputs["reward_model"], out, run.device, run.dtype,
                                quiet=True, out_name=name)
    files = [out / f"{name}{suffix}" for suffix in (".pt", ".json", "_metrics.json")]
    run.cached(name, key, inputs, go, outputs=files, code=method, folder=out)
    return files[0]


def evaluate(run, checkpoint) -> dict:
    """The scalar evaluation of a checkpoint on the held-out films (against SFT)."""
    from ..evaluate import summary_row
    policy = run.load_policy(checkpoint)
    return summary_row(run.evaluate(policy))


# --- seeds and points along training --------------------------------------------------------------
def seeds(run) -> list[int]:
    """The seeds a critics' study pairs its comparisons over: the run's seed and the next ones."""
    return [run.seed + i for i in range(FAST_SEEDS if run.fast else N_SEEDS)]


def data(run, seed: int) -> U.Data:
    """Seed `seed`'s preference pairs (Bradley–Terry labels, the pipeline's size) and the reward
    model fitted to them: the pipeline's own for the run's seed, else the Figure 2 study's data unit
    of that seed (drawn from the same SFT model with that seed, shared with that study)."""
    from ..preferences import PrefsConfig
    return U.data_unit(run, "bt", run.settings(PrefsConfig).train_repeats, seed)[0]


def failure_reasons(samples: list[dict]) -> dict:
    """How many samples fail each of the grammar's checks (and reuse a sentiment word)."""
    counts: dict[str, int] = {}
    for s in samples:
        for k, v in world.reward_breakdown(s["prompt"], s["response"]).items():
            if k in world.GRAMMAR_FAILURES + ("reused_word",) and v:
                counts[k] = counts.get(k, 0) + 1
    return counts


POINT_KEYS = U.POINT_KEYS


def _rl_window(history: list[dict], step: int) -> dict:
    """The mean proxy and gold reward of the training samples of the RL_WINDOW steps up to `step`."""
    window = [h for h in history if step - RL_WINDOW < h["step"] <= step]
    return {f"train_{k}": sum(h[f"{k}_reward"] for h in window) / len(window) for k in ("proxy", "gold")}


def along_training(run, method: str, beta: float, seed: int | None = None, **overrides) -> list[dict]:
    """`method` at `beta` (and `overrides`) trained on seed `seed`'s data (`data`) with that seed,
    evaluated on the held-out films at the CHECKPOINTS fractions of training and at the end. A unit
    of RUN/sweeps/ (reused while unchanged; its checkpoints are deleted once evaluated). Returns the
    points in order of training: step, the evaluation's scalars (POINT_KEYS), the samples' grammar
    failures, and for an RL method the training samples' proxy and gold reward around that step."""
    if method not in CONFIGS:
        raise ValueError(f"method must be one of {', '.join(CONFIGS)}, not {method!r}")
    from ..evaluate import summary_row
    seed = run.seed if seed is None else seed
    d = data(run, seed)
    cfg = replace(run.settings(CONFIGS[method], seed=seed), beta=beta, **overrides)
    if method == "dpo":
        inputs = {"sft": run.path("sft.pt"), "train_data": d.train, "val_data": d.val}
    else:
        inputs = {"sft": run.path("sft.pt"), "reward_model": d.reward_model}
    name = f"{_unit_name(method, beta, overrides)}_s{seed}_along"
    out = folder(run)

    def go():
        total = U.dpo_steps(cfg, d.train) if method == "dpo" else cfg.steps
        steps = sorted({max(1, round(f * total)) for f in CHECKPOINTS} - {total}) + [total]
        if method == "dpo":
            train_dpo(cfg, run.tok, inputs["sft"], d.train, d.val, out, run.device, run.dtype, quiet=True,
                      out_name=name, checkpoint_steps=steps[:-1])
        else:
            RL_TRAINERS[method](cfg, run.tok, inputs["sft"], inputs["reward_model"], out, run.device, run.dtype,
                                quiet=True, out_name=name, checkpoint_steps=steps[:-1])
        history = read_json(out / f"{name}_metrics.json")["history"]
        points = []
        for step in steps:
            ev = run.evaluate(run.load_policy(out / (f"{name}.pt" if step == total else f"{name}_step{step}.pt")))
            s = summary_row(ev)
            points.append({"step": step, "of_steps": total, **{k: s[k] for k in POINT_KEYS},
                           "failure_reasons": failure_reasons(ev["samples"]),
                           **(_rl_window(history, step) if method != "dpo" else {})})
        write_json(out / f"{name}_points.json", {"method": method, "beta": beta, "overrides": overrides,
                                                 "seed": seed, "points": points})
        for f in out.glob(f"{name}*.pt"):  # evaluated: only the numbers stay
            f.unlink()
    outputs = [out / f"{name}_points.json", out / f"{name}_metrics.json"]
    key = cfg.key() if method == "dpo" else asdict(cfg)
    run.cached(name, {**key, "checkpoints": list(CHECKPOINTS), **run.eval_config()}, inputs, go,
               outputs=outputs, code="studies.sweep", folder=out, announce=False)
    return read_json(outputs[0])["points"]


def history(run, method: str, beta: float, seed: int, **overrides) -> list[dict]:
    """The training history of an `along_training` unit (it must have run)."""
    return read_json(folder(run) / f"{_unit_name(method, beta, overrides)}_s{seed}_along_metrics.json")["history"]


# --- reading two methods at the same KL ------------------------------------------------------------
def start(sft: dict) -> tuple[float, float, float]:
    """The SFT model as a point of every frontier: KL 0, its gold reward and fluency."""
    return (0.0, sft["gold_reward"], sft["fluency"])


def matched(a: list[list[dict]], b: list[list[dict]], sft, kl: float | None = None) -> dict:
    """Methods a and b read at the same KL seed by seed: `a[i]` and `b[i]` are the points of seed i.
    Each side is read on its frontier (`harness.compare.frontier`: the upper concave hull with the
    SFT start, `sft`: its evaluation, or one per seed) at `kl`, or by default at the largest KL both reach in that seed. Returns the KL read
    at, both sides' gold reward and fluency per seed, and the paired differences a − b of each
    (`compare.paired(...).as_dict()`; a seed where either side does not reach the KL is left out)."""
    rows = {"kl": [], "a_gold": [], "b_gold": [], "a_fluency": [], "b_fluency": []}
    starts = sft if isinstance(sft, list) else [sft] * len(a)
    for pa, pb, first in zip(a, b, starts):
        ha, hb = C.frontier(pa, start(first)), C.frontier(pb, start(first))
        k = kl if kl is not None else min(ha[-1][0], hb[-1][0])
        ra, rb = C.at_kl(ha, k), C.at_kl(hb, k)
        rows["kl"].append(k)
        for side, r in (("a", ra), ("b", rb)):
            rows[f"{side}_gold"].append(None if r is None else r[0])
            rows[f"{side}_fluency"].append(None if r is None else r[1])
    return {**rows, "gold": paired_or_none(rows["a_gold"], rows["b_gold"]),
            "fluency": paired_or_none(rows["a_fluency"], rows["b_fluency"])}


def paired_or_none(a: list, b: list) -> dict | None:
    """`compare.paired(a, b).as_dict()`, or None when no seed has a value on both sides."""
    if not any(x is not None and y is not None for x, y in zip(a, b)):
        return None
    return C.paired(a, b).as_dict()


def along(points: list[dict], sft: dict, kl: float, key: str) -> float | None:
    """`key` of one run at the KL it first reaches along training (points in order of training, the
    SFT model at KL 0 first), linear between the two evaluations around it; None if never reached."""
    path = [(0.0, sft[key])] + [(p["kl_to_ref"], p[key]) for p in points]
    for (k0, v0), (k1, v1) in zip(path, path[1:]):
        if k0 <= kl <= k1 and k1 > k0:
            return v0 + (kl - k0) / (k1 - k0) * (v1 - v0)
    return None
