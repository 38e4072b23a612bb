"""The DPO paper's Figure 2 (left), in this world: gold reward against KL to the reference, for
every method, over its own grid, along training, on several seeds, under two labelling conditions.

Methods (the paper's, plus the RL algorithms learners meet today):
  DPO, Preferred-FT (SFT on the chosen responses), Unlikelihood    learn from the preference pairs
  REINFORCE (leave-one-out; rlhf.py), PPO (ppo.py), GRPO (grpo.py)  RL on a reward model fitted to them
  PPO-GT                                                            PPO on the gold reward itself

Conditions: the labels of the pairs, `bt` (noisy Bradley–Terry on the gold reward: this project's
default) or `deterministic` (the better response by gold always wins: the paper's IMDb setting).
Seeds: each seed draws its own preference pairs and labels from the shared SFT model, fits its own
reward model, and trains every method with its own randomness; the held-out films, the SFT model and
the evaluation samples' seed are the same for all. (Seed = the run's seed is the pipeline's own
pairs and reward model.)

Each method × grid point × condition × seed is one unit: trained from the SFT model, with the policy
evaluated at `checkpoints` points along training and at the end (gold reward, KL, fluency on the
held-out films, `runfolder.Run.evaluate`). A unit is reused while its provenance key (settings,
input files, code) is unchanged, so an interrupted study resumes; its checkpoints are deleted once
evaluated, its points and training metrics stay in RUN/frontier/units/.

Budgets: the cost of RL is its samples, and a frontier traced along training reaches the further in
KL the more a run samples. So every RL unit (REINFORCE, PPO, PPO-GT, GRPO) draws the same number of
responses, RL_SAMPLES (--fast: FAST_RL_SAMPLES), whatever its batch shape: its steps are that budget
over its samples per step (`unit_config`). The methods that learn from pairs spend theirs in epochs
over the pairs. Each method's grid and budget are in `frontier.json` ("budgets") and printed.

Summaries: a method's frontier in one seed is the upper concave hull of its points and the SFT point
(KL 0), non-decreasing (`harness.compare.frontier`: mixing two policies reaches every point of the
chord between them, so adding a run can raise the frontier, never lower it). `frontier.json` gives,
per condition and method, the gold reward (and fluency) of that hull at matched KL ∈ {0.5, 1, 2, 3}
nats, mean and standard deviation over the seeds that reach that KL ("matched"; a KL beyond a
seed's last point is not extrapolated, and n says how many seeds count); and DPO against every
other method paired by seed: the difference of the two hulls in each seed where both reach the KL
(same pairs, same reward model), its mean, spread and 95 % Student-t interval, and the verdict
("paired"). Compare methods with "paired": two "matched" means may come from different seeds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..harness import compare as C, headline, plots, provenance
from ..checkpoint import read_json, write_json
from ..evaluate import summary_row
from ..harness.stages import ensure
from ..training import StudyProgress

KL_TARGETS = (0.5, 1.0, 2.0, 3.0)
CHECKPOINTS = (1 / 8, 1 / 4, 1 / 2)  # evaluated fractions of training, early-heavy (and the end)
LABELS = ("bt", "deterministic")
N_SEEDS = 3
FAST_SEEDS = 2  # --fast: a smoke run still pairs gaps over more than one seed
RL_SAMPLES = 2560      # responses sampled by every RL unit: 40 steps of 64 (16 prompts × 4, GRPO 8 × 8)
FAST_RL_SAMPLES = 256  # --fast: 8 steps of 32


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    trainer: str                     # "dpo" (any registered loss), "rlhf" (REINFORCE), "ppo", "grpo"
    settings: dict                   # fixed settings of the trainer's config in this study
    grid: tuple[dict, ...]           # one run per entry
    fast_grid: tuple[dict, ...]      # empty: not in the --fast smoke run (a DPO unit with another loss)
    uses_labels: bool = True         # PPO-GT trains on the gold reward: the same under any labels
    samples: int = 0                 # an RL method's own sample budget (0: the study's, `rl_samples`)


METHODS = {m.name: m for m in (
    Method("dpo", "DPO", "dpo", {}, ({"beta": 0.1}, {"beta": 0.5}), ({"beta": 0.5},)),
    Method("preferred_ft", "Preferred-FT", "dpo", {"loss_type": "sft", "epochs": 1}, ({},), ()),
    Method("unlikelihood", "Unlikelihood", "dpo", {"loss_type": "unlikelihood", "epochs": 1,
                                                    "loss_args": {"alpha": 0.1}}, ({},), ()),
    Method("reinforce", "REINFORCE", "rlhf", {}, ({"beta": 0.02}, {"beta": 0.1}), ({"beta": 0.05},)),
    Method("ppo", "PPO", "ppo", {"epochs": 2}, ({"beta": 0.02}, {"beta": 0.1}), ({"beta": 0.05},)),
    Method("ppo_gt", "PPO-GT", "ppo", {"epochs": 2, "reward": "gold"},
           ({"beta": 0.02}, {"beta": 0.1}), ({"beta": 0.05},), uses_labels=False),
    Method("grpo", "GRPO", "grpo", {}, ({"beta": 0.1}, {"beta": 0.4}), ({"beta": 0.1},)),
)}  # the RL methods' steps come from the sample budget (RL_SAMPLES), the same for all of them
FAST_SETTINGS = {"dpo": {"epochs": 1, "batch_size": 32}, "ppo": {"epochs": 1},
                 "reward_model": {"epochs": 1}}  # --fast: a smoke run of every unit


@dataclass(frozen=True)
class Data:
    """Preference pairs of one labelling condition and size, drawn with one seed, and the reward
    model fitted to them."""
    labels: str
    repeats: int          # prompts per training film (PrefsConfig.train_repeats): 8 -> 2.8k pairs
    seed: int
    train: Path = field(compare=False, default=None)
    val: Path = field(compare=False, default=None)
    reward_model: Path = field(compare=False, default=None)

    @property
    def tag(self) -> str:
        return f"{self.labels}_r{self.repeats}_s{self.seed}"


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


# --- the units -----------------------------------------------------------------------------------
def data_unit(run, labels: str, repeats: int, seed: int) -> tuple[Data, float | None]:
    """The pairs and reward model of one condition and seed (the pipeline's own for the run's seed
    and default setting). Returns (data, seconds it took, None if reused)."""
    from ..preferences import PrefsConfig, generate_preference_files
    from ..reward_model import RMConfig, train_reward_model
    prefs = replace(run.settings(PrefsConfig, seed=seed), labels=labels, train_repeats=repeats)
    if labels == "bt" and repeats == run.settings(PrefsConfig).train_repeats and seed == run.seed:
        ensure(run, "prefs", "reward_model")
        return Data(labels, repeats, seed, run.path("prefs_train.jsonl"), run.path("prefs_val.jsonl"),
                    run.path("reward_model.pt")), None
    folder = study_folder(run) / "data" / f"{labels}_r{repeats}_s{seed}"
    sft = run.path("sft.pt")
    files = [folder / f for f in ("prefs_train.jsonl", "prefs_val.jsonl", "prefs_report.json")]

    def make_pairs():
        report = generate_preference_files(run.load_policy("sft.pt"), run.tok, prefs, folder, run.dtype)
        write_json(folder / "prefs_report.json", report)
    tag = f"{labels}_r{repeats}_s{seed}"
    seconds = _timed_unit(run, f"prefs_{tag}", asdict(prefs), {"sft": sft}, make_pairs, files, "preferences", folder)
    rm_cfg = run.settings(RMConfig, seed=seed, **(FAST_SETTINGS["reward_model"] if run.fast else {}))
    rm_files = [folder / f for f in ("reward_model.pt", "reward_model.json", "reward_model_metrics.json")]
    seconds_rm = _timed_unit(run, f"reward_model_{tag}", asdict(rm_cfg), {"sft": sft, "train_data": files[0], "val_data": files[1]},
                             lambda: train_reward_model(rm_cfg, run.tok, sft, files[0], files[1], folder, run.device,
                                                        run.dtype, quiet=True),
                             rm_files, "reward_model", folder)
    total = None if seconds is None and seconds_rm is None else (seconds or 0) + (seconds_rm or 0)
    return Data(labels, repeats, seed, files[0], files[1], rm_files[0]), total


def rl_samples(run) -> int:
    """The sample budget of every RL unit of this run's studies."""
    return FAST_RL_SAMPLES if run.fast else RL_SAMPLES


def samples_per_step(cfg) -> int:
    """Responses an RL trainer samples per step (0 for the methods that learn from pairs)."""
    return cfg.prompts_per_step * cfg.k if hasattr(cfg, "k") else 0


def unit_config(run, method: Method, point: dict, seed: int):
    """The trainer's config of one unit: the method's settings, the grid point, --fast's smoke
    settings, and for an RL method the steps that spend the sample budget exactly."""
    settings = {**method.settings, **point, **(FAST_SETTINGS.get(method.trainer, {}) if run.fast else {})}
    cfg = run.settings(_config_class(method.trainer), seed=seed, **settings)
    per_step, budget = samples_per_step(cfg), method.samples or rl_samples(run)
    if per_step:
        if budget % per_step:
            raise ValueError(f"{method.name}: {per_step} samples per step do not divide the budget of "
                             f"{budget} samples")
        cfg = replace(cfg, steps=budget // per_step)
    return cfg


def in_run(run, methods: dict) -> dict:
    """The methods this run trains: with --fast, those with a fast grid (the smoke run leaves out
    Preferred-FT and Unlikelihood: DPO units with another registered loss, tested as losses)."""
    return {k: m for k, m in methods.items() if not run.fast or m.fast_grid}


def budgets(run, methods: dict) -> dict:
    """{method: its grid and what one unit spends}: RL units their samples, the others epochs."""
    out = {}
    for m in methods.values():
        grid = list(m.fast_grid if run.fast else m.grid)
        cfg = unit_config(run, m, grid[0], run.seed)
        per_step = samples_per_step(cfg)
        spend = {"steps": cfg.steps, "samples_per_step": per_step} if per_step else {"epochs": cfg.epochs}
        out[m.name] = {"label": m.label, "grid": grid, "uses_labels": m.uses_labels,
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
        total = _dpo_steps(cfg, data.train) if method.trainer == "dpo" else cfg.steps
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
                          outputs, "studies.frontier", folder)
    return read_json(outputs[0])["points"], seconds


POINT_KEYS = ("gold_reward", "gold_std", "kl_to_ref", "fluency", "win_rate_vs_sft", "unique_frac", "entropy", "length")


def unit_name(method: Method, point: dict, data: Data) -> str:
    grid = "".join(f"_{k}{v}" for k, v in sorted(point.items()))
    data_tag = "gold" if not method.uses_labels else f"{data.labels}_r{data.repeats}"
    return f"{method.name}{grid}_{data_tag}_s{data.seed}"


def _timed_unit(run, name, config, inputs, compute, outputs, code, folder) -> float | None:
    """run.cached for a unit of a study; returns the seconds it took, or None when reused."""
    if not run.cached(name, config, inputs, compute, outputs=outputs, code=code, folder=folder, announce=False):
        return None
    return provenance.read_record(folder, name)["seconds"]


def _dpo_steps(cfg, train_file) -> int:
    from ..preferences import read_preferences
    n = len(read_preferences(train_file)[0])
    return cfg.epochs * math.ceil(n / cfg.batch_size)


# --- the study ---------------------------------------------------------------------------------
def seeds(run) -> list[int]:
    return [run.seed + i for i in range(FAST_SEEDS if run.fast else N_SEEDS)]


def collect(run, study: str, cells: list[tuple[str, str, int]], methods: dict | None = None,
            seed_list: list[int] | None = None) -> list[dict]:
    """Train and evaluate every unit of `cells` (method, labels, repeats), each method (from
    `methods`, default METHODS) over its grid, on every seed of `seed_list` (default: the study's
    seeds); finished units are reused; progress with an ETA is printed. Returns all points, labelled with method, labels, repeats, seed, grid."""
    methods = methods or METHODS
    ensure(run, "sft", "eval_sft")
    plan, seen = [], set()  # (kind, what): a condition's data unit first, then its methods
    for seed in seed_list or seeds(run):
        for name, labels, repeats in cells:
            m = methods[name]
            if m.uses_labels and ("data", labels, repeats, seed) not in seen:
                seen.add(("data", labels, repeats, seed))
                plan.append(("data", (labels, repeats, seed)))
            key = (name, labels if m.uses_labels else "gold", repeats if m.uses_labels else 0, seed)
            if key in seen:
                continue
            seen.add(key)
            for point in (m.fast_grid if run.fast else m.grid):
                plan.append((name, (m, point, labels, repeats, seed)))
    progress = StudyProgress(study, [kind for kind, _ in plan])
    points, data = [], {}
    for kind, what in plan:
        if kind == "data":
            labels, repeats, seed = what
            data[what], seconds = data_unit(run, labels, repeats, seed)
            progress.unit_done("data", f"pairs and reward model: {labels}, {repeats} prompts/film, seed {seed}", seconds)
            continue
        m, point, labels, repeats, seed = what
        if m.uses_labels:
            unit_points, seconds = method_unit(run, m, point, data[(labels, repeats, seed)])
        else:  # the gold reward needs no pairs: only the seed matters
            unit_points, seconds = method_unit(run, m, point, Data("gold", 0, seed))
        for p in unit_points:
            points.append({"method": m.name, "labels": labels if m.uses_labels else "gold",
                           "repeats": repeats if m.uses_labels else None, "seed": seed, "grid": point, **point, **p})
        desc = " ".join(f"{k}={v}" for k, v in point.items())
        where = f"{labels}, {repeats} prompts/film" if m.uses_labels else "gold reward"
        progress.unit_done(kind, f"{m.label} {desc} ({where}) seed {seed}", seconds)
    return points


def run_frontier(run) -> dict:
    """The study's stage: reused as a whole while every unit is; see the module docstring."""
    return run.study("frontier", lambda: _frontier(run))


def _frontier(run) -> None:
    from ..preferences import PrefsConfig
    repeats = run.settings(PrefsConfig).train_repeats
    methods = in_run(run, METHODS)
    if len(methods) < len(METHODS):
        print("frontier --fast leaves out " + ", ".join(m.label for k, m in METHODS.items() if k not in methods)
              + " (DPO units with another loss; the full study has them)")
    points = collect(run, "frontier", [(m, labels, repeats) for labels in LABELS for m in methods])
    sft = read_json(run.path("eval_sft.json"))
    result = {"methods": {m.name: m.label for m in methods.values()}, "labels": list(LABELS), "seeds": seeds(run),
              "kl_targets": list(KL_TARGETS), "sft": {k: sft[k] for k in ("gold_reward", "fluency")},
              "budgets": budgets(run, methods),
              "matched": {labels: matched_table(points, labels, sft) for labels in LABELS},
              "paired": {labels: paired_table(points, labels, sft) for labels in LABELS},
              "curves": {labels: seed_curves(points, labels, sft) for labels in LABELS},
              "points": points}
    out = study_folder(run)
    write_json(out / "frontier.json", result)
    plots.frontier_figure(result, out / "frontier.png")
    print_matched(result)


def points_of(points: list[dict], method: str, labels: str, seed: int, repeats: int | None = None) -> list[dict]:
    """One method's points in one condition and seed (PPO-GT's gold-reward points count in every
    condition: its training never sees a label)."""
    return [p for p in points if p["method"] == method and p["seed"] == seed and (p["labels"] == "gold" or (
            p["labels"] == labels and (repeats is None or p["repeats"] == repeats)))]


def hull(points: list[dict], sft: dict) -> list[tuple[float, float, float]]:
    """A method's frontier in one seed: the upper concave hull of its points and the SFT point (KL 0),
    non-decreasing, as (kl, gold, fluency) vertices (`harness.compare.frontier`: why a hull)."""
    return C.frontier(points, (0.0, sft["gold_reward"], sft["fluency"]))


at_kl = C.at_kl
mean_std = C.mean_std


def matched_table(points: list[dict], labels: str, sft: dict, repeats: int | None = None,
                  methods=None) -> dict:
    """{method: {kl: {gold_mean, gold_std, fluency_mean, n, values}}}: each seed's hull read at
    each matched KL, then mean and spread over the seeds that reach that KL."""
    table = {}
    for method in methods or sorted({p["method"] for p in points}):
        row = {}
        for kl in KL_TARGETS:
            found = [at_kl(hull(points_of(points, method, labels, s, repeats), sft), kl)
                     for s in sorted({p["seed"] for p in points})]
            found = [f for f in found if f is not None]
            if found:
                (g, gs), (f, _) = mean_std([x[0] for x in found]), mean_std([x[1] for x in found])
                row[str(kl)] = {"gold_mean": g, "gold_std": gs, "fluency_mean": f, "n": len(found),
                                "values": [x[0] for x in found]}
        table[method] = row
    return table


def paired_gaps(points: list[dict], a: str, b: str, labels: str, kl: float, sft: dict,
                repeats: int | None = None) -> list[float]:
    """Gold reward of method `a` minus method `b` at `kl`, one per seed where both hulls reach
    it: the same seed means the same pairs and reward model, so seed-to-seed noise cancels."""
    gaps = []
    for seed in sorted({p["seed"] for p in points}):
        x = at_kl(hull(points_of(points, a, labels, seed, repeats), sft), kl)
        y = at_kl(hull(points_of(points, b, labels, seed, repeats), sft), kl)
        if x is not None and y is not None:
            gaps.append(x[0] - y[0])
    return gaps


def gap_summary(gaps: list[float]) -> dict:
    """Mean and spread of paired differences, their 95 % interval and verdict (`compare.paired`);
    beyond the spread when the interval excludes 0."""
    return C.paired(gaps, [0.0] * len(gaps)).as_dict()


def paired_table(points: list[dict], labels: str, sft: dict, base: str = "dpo", repeats: int | None = None) -> dict:
    """{method: {kl: gap_summary of base − method}} for every other method, paired by seed."""
    table = {}
    for method in sorted({p["method"] for p in points} - {base}):
        row = {}
        for kl in KL_TARGETS:
            gaps = paired_gaps(points, base, method, labels, kl, sft, repeats)
            if gaps:
                row[str(kl)] = gap_summary(gaps)
        table[method] = row
    return table


def seed_curves(points: list[dict], labels: str, sft: dict, repeats: int | None = None, step: float = 0.1,
                max_kl: float = 10.0) -> dict:
    """{method: {"kl", "mean", "std"}}: each seed's hull on a KL grid, mean and spread over the
    seeds, where at least two seeds reach that KL (for the figure's band)."""
    out = {}
    for method in sorted({p["method"] for p in points}):
        envs = [hull(points_of(points, method, labels, s, repeats), sft) for s in sorted({p["seed"] for p in points})]
        curve = {"kl": [], "mean": [], "std": []}
        for i in range(int(max_kl / step) + 1):
            found = [g for g in (at_kl(e, i * step) for e in envs) if g is not None]
            if len(found) >= min(2, len(envs)):
                m, sd = mean_std([g for g, _ in found])
                curve["kl"].append(round(i * step, 6))
                curve["mean"].append(m)
                curve["std"].append(sd)
        out[method] = curve
    return out


def print_matched(result: dict) -> None:
    n_seeds = len(result.get("seeds", [])) or None
    for b in result.get("budgets", {}).values():
        grid, spend = headline.describe_budget(b)
        print(f"  {b['label']:14s}{grid:18s} {spend}")
    for labels, table in result["matched"].items():
        print(f"gold reward at matched KL, labels {labels} (mean ± std over the seeds reaching that KL; (n=) where not all do):")
        print("  method        " + "".join(f"{f'| KL {kl:g}':21s}" for kl in result["kl_targets"]))
        for method, row in table.items():
            cells = "".join(f"| {row[str(kl)]['gold_mean']:+.2f} ± {row[str(kl)]['gold_std']:.2f}"
                            + (f" (n={row[str(kl)]['n']})" if row[str(kl)]["n"] != n_seeds else "").ljust(6) + " "
                            if str(kl) in row else "| -                  " for kl in result["kl_targets"])
            print(f"  {result['methods'][method]:14s}{cells}")
        paired = result.get("paired", {}).get(labels)
        if paired:
            print("  DPO − method, paired by seed (mean ± std of the per-seed differences; * = the 95 % interval excludes 0):")
            for method, row in paired.items():
                cells = "".join(f"| {row[str(kl)]['gap_mean']:+.2f} ± {row[str(kl)]['gap_std']:.2f}"
                                + ("*" if row[str(kl)]["beyond_spread"] else " ")
                                + (f"(n={row[str(kl)]['n']})" if row[str(kl)]["n"] != n_seeds else "").ljust(5) + " "
                                if str(kl) in row else "| -                  " for kl in result["kl_targets"])
                print(f"  {result['methods'][method]:14s}{cells}")
