# %% [markdown]
# # 18 · A new preference loss in five minutes
# **You need** lesson 08 (the loss ladder, registering a loss) and lesson 12 (reading methods at a
# matched KL). **You will see** a new loss written in one cell, trained, and put on the bench.
# Every preference loss in `minidpo/losses.py` is a function registered under a name. A loss of
# the log-ratio margin $h = \log\frac{\pi(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_{ref}(y_l)}$
# needs three lines; a loss that reads more (per-token log-probs, lengths, no reference) gets the
# whole record of the batch. Here we write one in a cell, train it on the same pairs and budget as
# every loss on the bench, and put it on the leaderboard next to DPO.
# Run: `python tutorials/18_a_loss_in_five_minutes.py` (`--fast`: seconds).

# %%
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from minidpo.studies import frontier
from minidpo.checkpoint import input_hash, read_json
from minidpo.harness import provenance
from minidpo.harness.stages import STAGES
from minidpo.harness.tutorial import lesson_knobs, tutorial_run
from minidpo.studies.loss_bench import bench_methods
from minidpo.losses import LOSSES, PairRecord, LossOutput, register_loss, register_margin_loss
from minidpo.preferences import PrefsConfig

run = tutorial_run("18: a new preference loss in five minutes")
knobs = lesson_knobs(target=1.0)  # the target margin of the smoothed hinge (the Try below)

# %% [markdown]
# ## One cell: the loss
# A *smoothed hinge*: DPO's logistic loss $-\log\sigma(\beta h)$ keeps pushing the margin up for
# ever (its gradient never reaches 0), the hinge $\max(0, 1 - \beta h)$ stops abruptly at the margin
# $1/\beta$. In between: the logistic loss of $\beta h - 1$, which is a DPO with a target margin.
#
# The loss's hyperparameter has ONE default, in the registration (`target=...`); the function
# itself takes it as an argument. What a training uses is that default overridden by the run's
# `loss_args` (`--loss-arg target=3` on the command line), and the bench below passes the knob's
# value there, so it is part of the unit's provenance key: a changed target retrains this loss
# (and reuses every other unit), a changed line of the function too (its source is in the key).
#
# *Try*: `--set target=3.0` (or set `target` in the knobs cell and re-run from there): the smoothed
# hinge's gradient weight σ(target − βh) — DPO's weight σ(−βh), shifted by the target — stays near
# 1 until the margin βh passes the target, so the
# smoothed hinge pushes its pairs further apart: its held-out margin `eval/rewards/margins` and its
# KL to the reference (both printed in the bench's table below) grow.

# %%
@register_margin_loss("smooth-hinge", target=knobs.target)
def smooth_hinge(h, beta, target):
    """−log σ(β·h − target): DPO with a target margin, like SimPO's γ but with the reference."""
    return -F.logsigmoid(beta * h - target)


print("registered:", ", ".join(sorted(LOSSES)))
print(f"on four numbers: chosen up 1 nat, rejected down 1 nat, β = 0.5, target {knobs.target} →",
      smooth_hinge(torch.tensor(2.0), 0.5, knobs.target).item(), "vs DPO", -F.logsigmoid(torch.tensor(1.0)).item())
print("what a training calls it with:", LOSSES["smooth-hinge"].resolve({}))

# %% [markdown]
# ## The record form, for a loss that reads more than the margin
# The same target-margin idea on the *mean* log-prob per token, without a reference model (the
# SimPO family). `reference=False` means training never runs the reference at all.

# %%
@register_loss("mean-margin", reference=False, target=0.5)
def mean_margin(record: PairRecord, target) -> LossOutput:
    chosen, rejected = record.mean_logps()           # per-token means of log π(y_w), log π(y_l)
    losses = -F.logsigmoid(record.beta * (chosen - rejected) - target)
    return LossOutput(losses, (record.beta * chosen).detach(), (record.beta * rejected).detach())


# %% [markdown]
# ## On the bench
# The bench trains every loss the same way: one epoch over the run's pairs, evaluated along
# training on the held-out films (gold reward, KL, fluency), here on the first seed only, with DPO
# beside it. `python -m minidpo losses` runs all of them on 3 seeds (about a quarter of an hour).

# %%
methods = bench_methods()
hinge = methods["smooth-hinge"]  # the knob's target into the unit's settings (and so into its key)
methods["smooth-hinge"] = replace(hinge, settings={**hinge.settings, "loss_args": {"target": knobs.target}})
seed_data, _ = frontier.data_unit(run, "bt", run.settings(PrefsConfig).train_repeats, run.seed)
rows, margins = {}, {}
for name in ("sigmoid", "smooth-hinge", "mean-margin"):
    points, seconds = frontier.method_unit(run, methods[name], {}, seed_data)
    unit = frontier.unit_name(methods[name], {}, seed_data)
    trained = read_json(frontier.study_folder(run) / "units" / f"{unit}_metrics.json")
    final = points[-1]
    rows[name], margins[name] = final, trained["final"]["eval/rewards/margins"]
    print(f"{name:13s} gold {final['gold_reward']:+.3f} | win {final['win_rate_vs_sft']:.3f} | KL {final['kl_to_ref']:.2f} | "
          f"fluency {final['fluency']:.3f} | eval/rewards/margins {margins[name]:+.3f} | loss args "
          f"{trained['loss_args']} | " + ("reused" if seconds is None else f"trained in {seconds:.0f}s"))

# %% [markdown]
# ## The leaderboard, with our new losses placed on it
# If the full bench has run, its rows are read back and our losses are placed by their final gold
# reward (one seed here: a first look, not a verdict — the bench's spread over seeds says how much
# a difference has to be before it means anything). The bench writes `frontier/losses.json` in the
# folder it ran in (the stage table says so): this lesson's folder after
# `python -m minidpo losses --out runs/tutorial`, or `runs/default` after a plain
# `python -m minidpo losses`, which we read too when it holds the same configuration. The cell says
# which file it shows, and whether that bench started from the same SFT model as this run.

# %%
bench_file = STAGES["losses"].outputs[0]  # frontier/losses.json, inside the folder the bench ran in
bench, board = None, {}
for folder in dict.fromkeys([run.out, Path("runs/fast" if run.fast else "runs/default")]):
    config = folder / "run_config.json"
    if not (folder / bench_file).is_file() or not config.is_file():
        continue
    if any(read_json(config).get(k) != v for k, v in run.folder_config().items()):
        continue  # another configuration (fast or not, seed, dtype): not comparable
    why = provenance.why_stale(folder, "losses")  # its outputs and the files it read as it left them
    same_sft = (folder / "sft.pt").is_file() and input_hash(folder / "sft.pt") == input_hash(run.path("sft.pt"))
    saved = read_json(folder / bench_file)
    print(f"the bench's table: {folder / bench_file} ({len(saved['seeds'])} seed{'s' if len(saved['seeds']) > 1 else ''}, {len(saved['rows'])} losses; "
          + ("its files as the bench left them" if why is None else f"out of date: {why}") + "; "
          + ("the same SFT model as this run" if same_sft else "another SFT model than this run's") + ")")
    bench, board = folder / bench_file, {n: r["gold_reward"]["mean"] for n, r in saved["rows"].items()}
    break
if bench is None:
    print(f"no loss bench for this configuration yet ({run.out / bench_file}): `python -m minidpo losses "
          f"--out {run.out}` runs it (about a quarter of an hour); the board is our three losses alone")
for name, final in rows.items():
    board.setdefault(name, final["gold_reward"])
for rank, (name, gold) in enumerate(sorted(board.items(), key=lambda kv: -kv[1]), 1):
    mark = "  <- new" if name in ("smooth-hinge", "mean-margin") else ""
    print(f"{rank:2d}. {name:14s} final gold {gold:+.3f}{mark}")

# %% [markdown]
# ## What to remember
# - A preference loss is a function registered under a name: of the margin h in three lines, or of
#   the whole batch record when it needs log-probs, lengths or no reference.
# - Its hyperparameters and its source are part of the training's key: change either and only that
#   training is redone.
