"""The units of the long studies (the Figure 2 frontier, its ablation, the loss bench): one method
at one grid point, trained from the SFT model on one seed's data, evaluated along its training.

A unit's cache key holds its settings, its input files and the code of THIS module (and what it
reaches), not the code of the studies that read the units: a study's tables and figures can be
edited without retraining a single unit.

- `data_unit`: the preference pairs of one labelling condition, size and seed, and the reward model
  fitted to them (the pipeline's own for the run's seed and default setting).
- `method_unit`: a method trained on that data, evaluated at `CHECKPOINTS` fractions of training
  and at the end (gold reward, KL, fluency on the held-out films, `runfolder.Run.evaluate`); its
  checkpoints are deleted once evaluated, its points and training metrics stay in
  RUN/frontier/units/.
- `collect`: every unit of a study, in order, with progress and an ETA; finished units are reused.

Budgets: the cost of RL is its samples. An RL unit (REINFORCE, PPO, PPO-GT, GRPO) draws exactly
`Method.samples` responses (--fast: a tenth), whatever its batch shape: its steps are that budget
over its samples per step (`unit_config`). The methods that learn from pairs spend theirs in epochs
over the pairs (`Method.settings`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..checkpoint import read_json, write_json
from ..evaluate import summary_row
from ..harness import provenance
from ..harness.stages import ensure
from ..training import StudyProgress

CHECKPOINTS = (1 / 8, 1 / 4, 1 / 2)  # evaluated fractions of training, early-heavy (and the end)
N_SEEDS = 3
FAST_SEEDS = 2  # --fast: a smoke run still pairs gaps over more than one seed
RL_SAMPLES = 2560  # the frontier's budget: 40 steps of 64 (16 prompts × 4, GRPO 8 × 8)
FAST_DIVISOR = 10  # --fast: a tenth of every RL budget (256 = 8 steps of 32)
FAST_SETTINGS = {"dpo": {"epochs": 1, "batch_size": 32}, "ppo": {"epochs": 1},
                 "reward_model": {"epochs": 1}}  # --fast: a smoke run of every unit
POINT_KEYS = ("gold_reward", "gold_std", "kl_to_ref", "fluency", "win_rate_vs_sft", "unique_frac", "entropy", "length")


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    trainer: str                     # "dpo" (any registered loss), "rlhf" (REINFORCE), "ppo", "grpo"
    settings: dict                   # fixed settings of the trainer's config in this study
    grid: tuple[dict, ...]           # one run per entry
    fast_grid: tuple[dict, ...]      # empty: not in the --fast smoke run (a DPO unit with another loss)
    uses_labels: bool = True         # PPO-GT trains on the gold reward: the same under any labels
    samples: int = RL_SAMPLES        # an RL unit's sample budget (unused by the methods that learn from pairs)
    tag: str = ""                    # appended to its units' names when its settings differ from the frontier's


@dataclass(frozen=True)
class Data:
    """Preference pairs of one labelling condition and size, drawn with one seed, and the reward
    model fitted to them (`rm`: settings of the reward model that differ from the default)."""
    labels: str
    repeats: int          # prompts per training film (PrefsConfig.train_repeats): 8 -> 2.8k pairs
    seed: int
    train: Path = field(compare=False, default=None)
    val: Path = field(compare=False, default=None)
    reward_model: Path = field(compare=False, default=None)
    rm: tuple = ()        # ((setting, value), ...)

    @property
    def tag(self) -> str:
        return f"{self.labels}_r{self.repeats}_s{self.seed}" + settings_tag(dict(self.rm))


def settings_tag(settings: dict) -> str:
    """A settings dict as part of a file name ("" for none)."""
    return "".join(f"_{k}{v}" for k, v in sorted(settings.items()))


def _config_class(trainer: str):
    from ..dpo import DPOConfig
    from ..grpo import GRPOConfig
    from ..ppo import PPOConfig
    from ..rlhf import RLHFConfig
    return {"dpo": DPOConfig, "rlhf": RLHFConfig, "ppo": PPOConfig, "grpo": GRPOConfig}[trainer]


def _trainer(trainer: str):
    from ..dpo import train_dpo
    from ..grpo import train_grpo
    from ..ppo import train_ppo
    from ..rlhf import train_rlhf
    return {"dpo": train_dpo, "rlhf": train_rlhf, "ppo": train_ppo, "grpo": train_grpo}[trainer]


def study_folder(run) -> Path:
    return run.out / "frontier"


def rm_config(run, seed: int, rm: tuple = ()):
    """The reward model's config of one data unit: the run's, `rm`'s overrides, --fast's smoke settings."""
    from ..reward_model import RMConfig
    return run.settings(RMConfig, seed=seed, **dict(rm), **(FAST_SETTINGS["reward_model"] if run.fast else {}))


# --- the units -----------------------------------------------------------------------------------
def data_unit(run, labels: str, repeats: int, seed: int, rm: tuple = ()) -> tuple[Data, float | None]:
    """The pairs and reward model of one condition and seed (the pipeline's own for the run's seed
    and default setting). Returns (data, seconds it took, None if reused)."""
    from ..preferences import PrefsConfig, generate_preference_files
    from ..reward_model import train_reward_model
    prefs = replace(run.settings(PrefsConfig, seed=seed), labels=labels, train_repeats=repeats)
    if labels == "bt" and repeats == run.settings(PrefsConfig).train_repeats and seed == run.seed and not rm:
        ensure(run, "prefs", "reward_model")
        return Data(labels, repeats, seed, run.path("prefs_train.jsonl"), run.path("prefs_val.jsonl"),
                    run.path("reward_model.pt")), None
    pairs = study_folder(run) / "data" / f"{labels}_r{repeats}_s{seed}"  # the pairs: one folder per draw
    folder = pairs / settings_tag(dict(rm)).lstrip("_") if rm else pairs  # a reward model of other settings
    sft = run.path("sft.pt")
    files = [pairs / f for f in ("prefs_train.jsonl", "prefs_val.jsonl", "prefs_report.json")]

    def make_pairs():
        report = generate_preference_files(run.load_policy("sft.pt"), run.tok, prefs, pairs, run.dtype)
        write_json(pairs / "prefs_report.json", report)
    tag = f"{labels}_r{repeats}_s{seed}"
    seconds = _timed_unit(run, f"prefs_{tag}", asdict(prefs), {"sft": sft}, make_pairs, files, "preferences", pairs)
    rm_cfg = rm_config(run, seed, rm)
    rm_files = [folder / f for f in ("reward_model.pt", "reward_model.json", "reward_model_metrics.json")]
    seconds_rm = _timed_unit(run, f"reward_model_{tag}", asdict(rm_cfg), {"sft": sft, "train_data": files[0], "val_data": files[1]},
                             lambda: train_reward_model(rm_cfg, run.tok, sft, files[0], files[1], folder, run.device,
                                                        run.dtype, quiet=True),
                             rm_files, "reward_model", folder)
    total = None if seconds is None and seconds_rm is None else (seconds or 0) + (seconds_rm or 0)
    return Data(labels, repeats, seed, files[0], files[1], rm_files[0], rm), total


def rl_samples(run, method: Method) -> int:
    """The sample budget of one RL unit of `method` in this run (--fast: a tenth)."""
    return method.samples // FAST_DIVISOR if run.fast else method.samples


def samples_per_step(cfg) -> int:
    """Responses an RL trainer samples per step (0 for the methods that learn from pairs)."""
    return cfg.prompts_per_step * cfg.k if hasattr(cfg, "k") else 0


def unit_config(run, method: Method, point: dict, seed: int):
    """The trainer's config of one unit: the method's settings, the grid point, --fast's smoke
    settings, and for an RL method the steps that spend its sample budget exactly."""
    settings = {**method.settings, **point, **(FAST_SETTINGS.get(method.trainer, {}) if run.fast else {})}
    cfg = run.settings(_config_class(method.trainer), seed=seed, **settings)
    per_step = samples_per_step(cfg)
    if per_step:
        budget = rl_samples(run, method)
        if budget % per_step:
            raise ValueError(f"{method.name}: {per_step} samples per step do not divide the budget of {budget} samples")
        cfg = replace(cfg, steps=budget // per_step)
    return cfg


def in_run(run, methods: dict) -> dict:
    """The methods this run trains: with --fast, those with a fast grid (the smoke run leaves out
    Preferred-FT and Unlikelihood: DPO units with another registered loss, tested as losses)."""
    return {k: m for k, m in methods.items() if not run.fast or m.fast_grid}


def budgets(run, methods: dict) -> dict:
    """{method key: its grid and what one unit spends}: RL units their samples (steps × samples per
    step), the others their epochs and batch size over the pairs."""
    out = {}
    for key, m in methods.items():
        grid = list(m.fast_grid if run.fast else m.grid)
        cfg = unit_config(run, m, grid[0], run.seed)
        per_step = samples_per_step(cfg)
        spend = ({"steps": cfg.steps, "samples_per_step": per_step} if per_step
                 else {"epochs": cfg.epochs, "batch_size": cfg.batch_size})
        out[key] = {"label": m.label, "grid": grid, "uses_labels": m.uses_labels,
                    "samples_per_unit": per_step * cfg.steps if per_step else 0, **spend}
    return out


def method_unit(run, method: Method, point: dict, data: Data) -> tuple[list[dict], float | None]:
    """Train `method` at grid `point` on `data` with data.seed, evaluate it at the CHECKPOINTS
    fractions of training (none with --fast, a smoke run) and at the end; returns (its points,
    seconds or None if reused). Each point says how many responses the run had sampled by then."""
    fractions = () if run.fast else CHECKPOINTS
    cfg = unit_config(run, method, point, data.seed)
    per_step = samples_per_step(cfg)
    name = unit_name(method, point, data)
    folder = study_folder(run) / "units"
    if method.trainer == "dpo":
        inputs = {"sft": run.path("sft.pt"), "train_data": data.train, "val_data": data.val}
    elif cfg.reward == "learned":
        inputs = {"sft": run.path("sft.pt"), "reward_model": data.reward_model}
    else:
        inputs = {"sft": run.path("sft.pt")}

    def go():
        total = dpo_steps(cfg, data.train) if method.trainer == "dpo" else cfg.steps
        steps = sorted({max(1, round(f * total)) for f in fractions} - {total}) + [total]
        keep = steps[:-1]
        if method.trainer == "dpo":
            _trainer("dpo")(cfg, run.tok, inputs["sft"], data.train, data.val, folder, run.device, run.dtype,
                            quiet=True, out_name=name, checkpoint_steps=keep)
        else:
            _trainer(method.trainer)(cfg, run.tok, inputs["sft"], inputs.get("reward_model"), folder, run.device,
                                     run.dtype, quiet=True, out_name=name, checkpoint_steps=keep)
        points = []
        for step in steps:
            ckpt = folder / (f"{name}.pt" if step == total else f"{name}_step{step}.pt")
            s = summary_row(run.evaluate(run.load_policy(ckpt)))
            points.append({"step": step, "of_steps": total, "samples": step * per_step,
                           "of_samples": total * per_step, **{k: s[k] for k in POINT_KEYS}})
        write_json(folder / f"{name}_points.json", {"method": method.name, "point": point, "data": data.tag,
                                                    "seed": data.seed, "labels": data.labels, "points": points})
        for f in folder.glob(f"{name}*"):  # the checkpoints are evaluated: only numbers stay
            if f.name not in (f"{name}_points.json", f"{name}_metrics.json"):
                f.unlink()
    outputs = [folder / f"{name}_points.json", folder / f"{name}_metrics.json"]
    key = cfg.key() if method.trainer == "dpo" else asdict(cfg)
    seconds = _timed_unit(run, name, {**key, "checkpoints": list(fractions), **run.eval_config()}, inputs, go,
                          outputs, "studies.units", folder)
    return read_json(outputs[0])["points"], seconds


def unit_name(method: Method, point: dict, data: Data) -> str:
    grid = settings_tag(point)
    data_tag = "gold" if not method.uses_labels else f"{data.labels}_r{data.repeats}" + settings_tag(dict(data.rm))
    budget = "" if method.trainer == "dpo" or method.samples == RL_SAMPLES else f"_n{method.samples}"
    return f"{method.name}{grid}{method.tag}{budget}_{data_tag}_s{data.seed}"


def _timed_unit(run, name, config, inputs, compute, outputs, code, folder) -> float | None:
    """run.cached for a unit of a study; returns the seconds it took, or None when reused."""
    if not run.cached(name, config, inputs, compute, outputs=outputs, code=code, folder=folder, announce=False):
        return None
    return provenance.read_record(folder, name)["seconds"]


def dpo_steps(cfg, train_file) -> int:
    """The steps of a DPO unit: its epochs over the pairs of `train_file`, in batches."""
    from ..preferences import read_preferences
    n = len(read_preferences(train_file)[0])
    return cfg.epochs * math.ceil(n / cfg.batch_size)


# --- a study's units ----------------------------------------------------------------------------------
def seeds(run) -> list[int]:
    return [run.seed + i for i in range(FAST_SEEDS if run.fast else N_SEEDS)]


def collect(run, study: str, cells: list[tuple], methods: dict, seed_list: list[int] | None = None) -> list[dict]:
    """Train and evaluate every unit of `cells`, each (method key, labels, repeats) or (method key,
    labels, repeats, rm) with `rm` the reward model's settings as ((name, value), ...): each method
    of `methods` over its grid, on every seed of `seed_list` (default: the study's seeds); finished
    units are reused; progress with an ETA is printed. Returns all points, each labelled with its
    method's name, labels, repeats, seed, grid point and `rm`."""
    ensure(run, "sft", "eval_sft")
    plan, seen = [], set()  # (kind, what): a condition's data unit first, then its methods
    for seed in seed_list or seeds(run):
        for cell in cells:
            key, labels, repeats = cell[:3]
            rm = tuple(cell[3]) if len(cell) > 3 else ()
            m = methods[key]
            if m.uses_labels and ("data", labels, repeats, seed, rm) not in seen:
                seen.add(("data", labels, repeats, seed, rm))
                plan.append(("data", (labels, repeats, seed, rm)))
            done = (key, labels if m.uses_labels else "gold", repeats if m.uses_labels else 0,
                    rm if m.uses_labels else (), seed)
            if done in seen:
                continue
            seen.add(done)
            for point in (m.fast_grid if run.fast else m.grid):
                plan.append((key, (m, point, labels, repeats, seed, rm)))
    progress = StudyProgress(study, [kind for kind, _ in plan])
    points, data = [], {}
    for kind, what in plan:
        if kind == "data":
            labels, repeats, seed, rm = what
            data[what], seconds = data_unit(run, labels, repeats, seed, rm)
            progress.unit_done("data", f"pairs and reward model: {labels}, {repeats} prompts/film"
                               + (f", reward model {dict(rm)}" if rm else "") + f", seed {seed}", seconds)
            continue
        m, point, labels, repeats, seed, rm = what
        if m.uses_labels:
            unit_points, seconds = method_unit(run, m, point, data[(labels, repeats, seed, rm)])
        else:  # the gold reward needs no pairs: only the seed matters
            unit_points, seconds = method_unit(run, m, point, Data("gold", 0, seed))
        for p in unit_points:
            points.append({"method": m.name, "labels": labels if m.uses_labels else "gold",
                           "repeats": repeats if m.uses_labels else None, "seed": seed, "grid": point,
                           **({"rm": dict(rm)} if rm and m.uses_labels else {}), **point, **p})
        desc = " ".join(f"{k}={v}" for k, v in point.items())
        where = f"{labels}, {repeats} prompts/film" if m.uses_labels else "gold reward"
        spent = f", {rl_samples(run, m)} samples" if m.trainer != "dpo" else ""
        progress.unit_done(kind, f"{m.label}{m.tag} {desc} ({where}{spent}) seed {seed}", seconds)
    return points
