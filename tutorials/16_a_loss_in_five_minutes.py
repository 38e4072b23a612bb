# %% [markdown]
# # 16 · A new preference loss in five minutes
# Every preference loss in `minidpo/losses.py` is a function registered under a name. A loss of
# the log-ratio margin $h = \log\frac{\pi(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_{ref}(y_l)}$
# needs three lines; a loss that reads more (per-token log-probs, lengths, no reference) gets the
# whole record of the batch. Here we write one in a cell, train it on the same pairs and budget as
# every loss on the bench, and put it on the leaderboard next to DPO — in about two minutes.
# Run: `python tutorials/16_a_loss_in_five_minutes.py` (`--fast`: seconds).

# %%
import torch
import torch.nn.functional as F

from minidpo.studies import frontier
from minidpo.checkpoint import read_json
from minidpo.harness.tutorial import tutorial_run
from minidpo.studies.loss_bench import bench_methods
from minidpo.losses import LOSSES, PairRecord, LossOutput, register_loss, register_margin_loss
from minidpo.preferences import PrefsConfig

run = tutorial_run("16: a new preference loss in five minutes")

# %% [markdown]
# ## One cell: the loss
# A *smoothed hinge*: DPO's logistic loss $-\log\sigma(\beta h)$ keeps pushing the margin up for
# ever (its gradient never reaches 0), the hinge $\max(0, 1 - \beta h)$ stops abruptly at the margin
# $1/\beta$. In between: the logistic loss of $\beta h - 1$, which is a DPO with a target margin.
#
# *Try*: change the target from 1 to 3 and re-run: the cell's source is part of the unit's
# provenance key, so the bench retrains it (and reuses everything else).

# %%
@register_margin_loss("smooth-hinge", target=1.0)
def smooth_hinge(h, beta, target=1.0):
    """−log σ(β·h − target): DPO with a target margin, like SimPO's γ but with the reference."""
    return -F.logsigmoid(beta * h - target)


print("registered:", ", ".join(sorted(LOSSES)))
print("on four numbers: chosen up 1 nat, rejected down 1 nat, β = 0.5 →",
      smooth_hinge(torch.tensor(2.0), 0.5).item(), "vs DPO", -F.logsigmoid(torch.tensor(1.0)).item())

# %% [markdown]
# ## The record form, for a loss that reads more than the margin
# The same target-margin idea on the *mean* log-prob per token, without a reference model (the
# SimPO family). `reference=False` means training never runs the reference at all.

# %%
@register_loss("mean-margin", reference=False, target=0.5)
def mean_margin(record: PairRecord, target=0.5) -> LossOutput:
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
seed_data, _ = frontier.data_unit(run, "bt", run.settings(PrefsConfig).train_repeats, run.seed)
rows = {}
for name in ("sigmoid", "smooth-hinge", "mean-margin"):
    points, seconds = frontier.method_unit(run, methods[name], {}, seed_data)
    final = points[-1]
    rows[name] = final
    print(f"{name:13s} gold {final['gold_reward']:+.3f} | win {final['win_rate_vs_sft']:.3f} | KL {final['kl_to_ref']:.2f} | "
          f"fluency {final['fluency']:.3f} | " + ("reused" if seconds is None else f"trained in {seconds:.0f}s"))

# %% [markdown]
# ## The leaderboard, with our new losses placed on it
# If the full bench has run (`python -m minidpo losses`), its rows are read back and our losses
# are placed by their final gold reward (one seed here: a first look, not a verdict — the bench's
# spread over seeds says how much a difference has to be before it means anything).

# %%
bench = run.out / "frontier" / "losses.json"
board = {n: r["gold_reward"]["mean"] for n, r in read_json(bench)["rows"].items()} if bench.is_file() else {}
for name, final in rows.items():
    board.setdefault(name, final["gold_reward"])
for rank, (name, gold) in enumerate(sorted(board.items(), key=lambda kv: -kv[1]), 1):
    mark = "  <- new" if name in ("smooth-hinge", "mean-margin") else ""
    print(f"{rank:2d}. {name:14s} final gold {gold:+.3f}{mark}")
