# %% [markdown]
# # 19 · A new preference loss in five minutes
# **You need** the DPO-loss lesson (the loss ladder, registering a loss) and the Figure 2 lesson (reading methods at a
# matched KL). **You will see** a new loss written in one cell, trained, and put on the bench.
# Every preference loss in `minidpo/losses.py` is a function registered under a name. A loss of
# the log-ratio margin $h = \log\frac{\pi(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_{ref}(y_l)}$
# needs three lines; a loss that reads more (per-token log-probs, lengths, no reference) gets the
# whole record of the batch. Here we write one in a cell, train it on the same pairs and budget as
# every loss on the bench, and put it on the leaderboard next to DPO.
# Run: `python tutorials/19_a_loss_in_five_minutes.py` (`--fast`: seconds).

# %%
import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from minidpo.studies import frontier, units
from minidpo.studies import loss_bench
from minidpo.checkpoint import read_json
from minidpo.harness import compare as C
from minidpo.harness.tutorial import claim, lesson_knobs, saved_study, tutorial_run, where_from
from minidpo.losses import LOSSES, PairRecord, LossOutput, hinge_loss, register_loss, register_margin_loss, sigmoid_loss
from minidpo.preferences import PrefsConfig

run = tutorial_run("19: a new preference loss in five minutes")
knobs = lesson_knobs(target=1.0, seeds=1)  # the smoothed hinge's target margin; seeds the new losses train on

# %% [markdown]
# ## One cell: the loss
# A *smoothed hinge*: the logistic loss of $\beta h - t$ instead of DPO's $\beta h$, a DPO with a
# target margin $t$. DPO's logistic loss $-\log\sigma(\beta h)$ keeps pushing the margin up for ever
# (its gradient never reaches 0); the hinge $\max(0, 1 - \beta h)$ pushes with full force until the
# margin reaches $1/\beta$ and then not at all. Their **gradient weights** (how hard a pair is
# pushed, $-\partial \mathcal{L}/\partial(\beta h)$):
# $$\text{DPO: } \sigma(-\beta h), \qquad \text{hinge: } [\beta h < 1], \qquad \text{smoothed hinge: } \sigma(t - \beta h).$$
# The smoothed hinge is DPO's curve moved right by $t$ (a constant form of the offset in Amini et
# al.'s ODPO, 2024): for $t > 0$ it pushes every pair harder than DPO at every margin — it is not
# "in between" DPO and the hinge. The cell below measures the three weights with autograd on a grid
# of margins.
#
# The loss's hyperparameter has ONE default, in the registration (`target=...`); the function
# itself takes it as an argument. What a training uses is that default overridden by the run's
# `loss_args` (`--loss-arg target=3` on the command line), and the bench below passes the knob's
# value there, so it is part of the unit's provenance key: a changed target retrains this loss
# (and reuses every other unit), a changed line of the function too (its source is in the key).
#
# *Try*: `--set target=3.0` (or set `target` in the knobs cell and re-run from there): the smoothed
# hinge's gradient weight σ(target − βh) stays near 1 until the margin βh passes the target, so the
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
margins = torch.linspace(-4, 8, 25, requires_grad=True)      # βh (β = 1, so h = βh)
weights = {name: -torch.autograd.grad(fn(margins).sum(), margins)[0] for name, fn in (
    ("DPO", lambda z: sigmoid_loss(z, 1.0)), ("hinge", lambda z: hinge_loss(z, 1.0)),
    ("smooth-hinge", lambda z: smooth_hinge(z, 1.0, knobs.target)))}
print("βh            " + " ".join(f"{z:+5.1f}" for z in margins[::3].tolist()))
for name, w in weights.items():
    print(f"{name:13s} " + " ".join(f"{x:5.2f}" for x in w[::3].tolist()))
claim(f"the smoothed hinge's weight exceeds DPO's at every margin of the grid (target {knobs.target:g} > 0): "
      "it pushes harder than DPO everywhere, not in between DPO and the hinge",
      bool((weights["smooth-hinge"] > weights["DPO"]).all()),
      smallest_excess=(weights["smooth-hinge"] - weights["DPO"]).min().item())
claim("against the hinge it pushes less before the hinge's margin βh = 1 and more after it",
      bool((weights["smooth-hinge"][margins < 1] < weights["hinge"][margins < 1]).all()
           and (weights["smooth-hinge"][margins > 1] > weights["hinge"][margins > 1]).all()))

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
# The bench trains every loss the same way: one epoch over a seed's pairs, evaluated on the held-out
# films (gold reward, KL, fluency) at 1/8, 1/4 and 1/2 of training and at the end. Here: our two new
# losses and DPO beside them, on the run's own seed (`seeds` more with the *Try* below).
# **gold** is the mean gold reward of the policy's samples on the held-out films, **KL** the mean
# over those samples of Σ_t log π/π_ref (nats per response), **win** the win rate against the SFT
# model's samples, **fluency** the share of grammatical samples.

# %%
methods = loss_bench.bench_methods()
hinge = methods["smooth-hinge"]  # the knob's target into the unit's settings (and so into its key)
methods["smooth-hinge"] = replace(hinge, settings={**hinge.settings, "loss_args": {"target": knobs.target}})
NEW = ("smooth-hinge", "mean-margin")
repeats = run.settings(PrefsConfig).train_repeats
seed_list = [run.seed + i for i in range(knobs.seeds)]
points, rows, margins_at_end = [], {}, {}
for seed in seed_list:
    seed_data, _ = units.data_unit(run, "bt", repeats, seed)
    for name in ("sigmoid", *NEW):
        unit_points, seconds = units.method_unit(run, methods[name], {}, seed_data)
        points += [{"method": name, "seed": seed, "labels": "bt", **p} for p in unit_points]
        if seed != run.seed:
            continue
        unit = frontier.unit_name(methods[name], {}, seed_data)
        trained = read_json(frontier.study_folder(run) / "units" / f"{unit}_metrics.json")
        final = unit_points[-1]
        rows[name], margins_at_end[name] = final, trained["final"]["eval/rewards/margins"]
        print(f"{name:13s} gold {final['gold_reward']:+.3f} | win {final['win_rate_vs_sft']:.3f} | KL {final['kl_to_ref']:.2f} | "
              f"fluency {final['fluency']:.3f} | eval/rewards/margins {margins_at_end[name]:+.3f} | loss args "
              f"{trained['loss_args']} | " + ("reused" if seconds is None else f"trained in {seconds:.0f}s"))
claim("the three end at different KL: their final gold reward cannot rank them (the Figure 2 lesson)",
      len({round(r["kl_to_ref"], 2) for r in rows.values()}) == len(rows),
      **{f"KL_{name}": r["kl_to_ref"] for name, r in rows.items()})

# %% [markdown]
# ## At the same KL
# So each new loss is read against DPO where both are: on each seed's frontier (the upper concave
# hull of its evaluated points and the SFT point), at the largest KL both frontiers reach in every
# seed, and at the bench's KL 0.5 when both reach it. With one seed there is no spread to judge a
# difference by: the lesson prints it and says so. *Try*: `--set seeds=3` trains the two new losses
# and DPO on the bench's 3 seeds (two more seeds' pairs and reward models first: several minutes):
# each difference then has a 95 % interval, paired by seed, and a verdict.

# %%
sft = read_json(run.path("eval_sft.json"))
hulls = {name: [frontier.hull(frontier.points_of(points, name, "bt", s), sft) for s in seed_list]
         for name in ("sigmoid", *NEW)}
versus = {}  # loss -> {kl: Difference of loss − DPO, paired by seed}
for name in NEW:
    shared = min(max(v[0] for v in h) for h in hulls[name] + hulls["sigmoid"])  # the largest KL both reach in every seed
    versus[name] = {}
    for kl in sorted({math.floor(100 * shared) / 100, *(k for k in frontier.KL_TARGETS if k <= shared)}):
        gold = {n: [C.at_kl(h, kl)[0] for h in hulls[n]] for n in (name, "sigmoid")}
        d = versus[name][kl] = C.paired(gold[name], gold["sigmoid"])
        print(f"{name:13s} − DPO at KL {kl:<5g}: {d.describe()} — {d.verdict}")

# %% [markdown]
# ## The leaderboard
# The full bench (`python -m minidpo losses`: every registered loss, 3 seeds, about a quarter of an
# hour) ranks the losses by their gold on each seed's frontier at the bench's matched KL (the
# largest of 0.5, 1, 2, 3 nats that half the losses reach in every seed), and reads each against
# DPO paired by seed. The lesson reads it from this folder, `runs/default` or the copy committed
# with minidpo, and says which; our two losses are not on it (they are registered in this lesson
# only), so they are placed by the reading above.

# %%
found = saved_study(run, "frontier/losses.json")
bench = read_json(found) if found else None
if bench is None:
    print("no loss bench here: " + run.command("losses"))
else:
    print(f"Shown: {where_from(run, found)}")
    loss_bench.print_bench(bench)
    kl = bench["matched_kl"]
    told = loss_bench.measurable(bench, kl)
    ranked = [n for n in bench["order"] if bench["rows"][n]["matched"].get(str(kl), {}).get("n") == len(bench["seeds"])]
    side = {"above": "below DPO", "below": "above DPO"}  # the verdict is DPO's, against the loss
    print(f"\nat KL {kl}, paired with DPO over {len(bench['seeds'])} seeds: "
          + (", ".join(f"{n} {side[v]}" for n, v in told.items()) or "no loss measurably above or below DPO")
          + f"; the other {len(ranked) - 1 - len(told)} ranked losses: no measurable difference")

# %% [markdown]
# ## What to remember
# - A preference loss is a function registered under a name: of the margin h in three lines, or of
#   the whole batch record when it needs log-probs, lengths or no reference.
# - Its hyperparameters and its source are part of the training's key: change either and only that
#   training is redone.
# - Read a loss by its gradient weight: a target margin moves DPO's weight curve, it does not bend
#   it towards the hinge.
# - Rank losses at the same KL, paired by seed, and call a difference only when its interval
#   excludes 0; a loss that does not reach that KL in every seed cannot be ranked there at all.
