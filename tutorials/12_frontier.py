# %% [markdown]
# # 12 · The paper's Figure 2, and why it comes out the way it does here
# **You need** lessons 06 and 09 (a REINFORCE run and a DPO run, each read by gold reward and KL).
# **You will see** how methods are compared fairly, and what the comparison says in this world.
# The DPO paper's Figure 2 (left) plots, for every method and hyperparameter, the reward reached
# against the KL divergence to the reference: a method whose points lie higher at the same KL makes
# the better trade. On IMDb the paper found DPO's frontier above PPO's, even above PPO on the
# ground-truth reward. The full study redoes it on our world, with every method of the paper (DPO,
# PPO, PPO-GT, Preferred-FT, Unlikelihood) plus REINFORCE and GRPO, several seeds, and both ways of
# labelling the pairs — and then measures *why* it comes out the way it does.
#
# Run: `python tutorials/12_frontier.py`. By default the lesson runs a lecture-sized piece of the
# study (two of its units: DPO and REINFORCE at one β each, one seed, this project's labels), builds
# a frontier from them by hand, and then shows the full study's saved results if this folder (or
# `runs/default`) holds them. The full study is long: run it with `--set full_study=true`, or
# `python -m minidpo frontier` and `python -m minidpo ablation` with the same `--out` (every unit
# is reused afterwards, and an interrupted run resumes). `--fast` is a smoke run.

# %%
from collections import Counter
from dataclasses import replace

from matplotlib.figure import Figure

from minidpo.checkpoint import read_json
from minidpo.harness import headline, plots
from minidpo.harness.tutorial import lesson_knobs, saved_study, show, tutorial_run
from minidpo.preferences import PrefsConfig
from minidpo.tokenizer import shipped_file
from minidpo.studies import frontier as F
from minidpo.studies.ablation import print_ablation, run_ablation

run = tutorial_run("12: the reward-vs-KL frontier and the ablation")

# %% [markdown]
# The knobs: the KL at which the frontiers are compared, and whether to run the full study here.

# %%
knobs = lesson_knobs(matched_kl=1.0, full_study=False)

# %% [markdown]
# ## Two units of the study
# A unit is one method at one grid point (β) in one labelling condition with one seed: trained
# from the SFT model and evaluated at points along its training on the held-out films (gold
# reward, KL to the reference, fluency of the samples). Here: DPO and REINFORCE, one β each, the
# run's own pairs and reward model. They are units of the full study, which reuses them.

# %%
repeats = run.settings(PrefsConfig).train_repeats
# one grid point of each method's grid (REINFORCE's smallest β: it travels furthest in KL)
lesson_methods = {"dpo": replace(F.METHODS["dpo"], grid=F.METHODS["dpo"].grid[-1:]),
                  "reinforce": replace(F.METHODS["reinforce"], grid=F.METHODS["reinforce"].grid[:1])}
points = F.collect(run, "frontier (lesson)", [(m, "bt", repeats) for m in lesson_methods], lesson_methods,
                   seed_list=[run.seed])
sft = read_json(run.path("eval_sft.json"))
per_unit = Counter(p["method"] for p in points)
print(f"{len(points)} evaluated points: " + ", ".join(f"{F.METHODS[m].label} {n} along its training"
                                                      for m, n in per_unit.items()))
print(f"SFT (KL 0): gold {sft['gold_reward']:+.3f}, fluency {sft['fluency']:.3f}")
for p in points:
    print(f"  {F.METHODS[p['method']].label:9s} β {p['beta']:<4g} step {p['step']:4d}/{p['of_steps']}: "
          f"KL {p['kl_to_ref']:5.2f}  gold {p['gold_reward']:+.3f}  fluency {p['fluency']:.3f}")

# %% [markdown]
# ## A frontier by hand
# In one seed, a method's frontier is its **upper envelope**: start from the SFT model at KL 0,
# walk through the points in order of KL, and keep a point only if its gold reward beats every
# point kept so far (every point at lower KL); join the kept points with straight lines. A point
# that is further from the reference *and* no better is dominated: no one would pick it.

# %%
hand = [(0.0, sft["gold_reward"], sft["fluency"])]
for p in sorted(F.points_of(points, "dpo", "bt", run.seed), key=lambda p: p["kl_to_ref"]):
    best = hand[-1][1]  # the kept points climb, so the last one is the best at lower KL
    if p["kl_to_ref"] > 0 and p["gold_reward"] > best:
        hand.append((p["kl_to_ref"], p["gold_reward"], p["fluency"]))
        print(f"  KL {p['kl_to_ref']:5.2f}, gold {p['gold_reward']:+.3f}: kept (beats {best:+.3f})")
    else:
        print(f"  KL {p['kl_to_ref']:5.2f}, gold {p['gold_reward']:+.3f}: dropped (gold {best:+.3f} at lower KL)")
print(f"DPO's envelope: {len(hand)} points, from the SFT point to KL {hand[-1][0]:.2f}")

# %% [markdown]
# **Reading it at a matched KL.** Find the segment (k₀, g₀)–(k₁, g₁) that contains the KL k and
# interpolate: $g(k) = g_0 + \frac{k - k_0}{k_1 - k_0}(g_1 - g_0)$. Beyond the last point there
# is no frontier: it is not extrapolated.

# %%
kl = knobs.matched_kl
segment = next(((a, b) for a, b in zip(hand, hand[1:]) if a[0] <= kl <= b[0]), None)
if segment:
    (k0, g0, _), (k1, g1, _) = segment
    w = (kl - k0) / (k1 - k0)
    gold_at_kl = g0 + w * (g1 - g0)
    print(f"DPO at KL {kl:g}: g = {g0:+.3f} + {w:.3f}·({g1:+.3f} − {g0:+.3f}) = {gold_at_kl:+.3f}")
else:
    gold_at_kl = None
    print(f"DPO at KL {kl:g}: beyond its last point (KL {hand[-1][0]:.2f}): not extrapolated")

# %% [markdown]
# ## The same, by the library
# `frontier.envelope` and `frontier.at_kl` are the two functions every table of the study uses.

# %%
env = F.envelope(F.points_of(points, "dpo", "bt", run.seed), sft)
got = F.at_kl(env, kl)
library_gold = got[0] if got else None
print(f"envelope: {len(env)} points, the same as by hand: {env == hand}; at KL {kl:g}: "
      + (f"gold {library_gold:+.3f}" if got else "beyond the last point"))
read = {m: F.at_kl(F.envelope(F.points_of(points, m, "bt", run.seed), sft), kl) for m in lesson_methods}
print(f"each envelope at KL {kl:g}: " + ", ".join(f"{F.METHODS[m].label} " + (f"gold {r[0]:+.3f}" if r else "beyond its last point")
                                             for m, r in read.items()))
small = {"methods": {m: F.METHODS[m].label for m in lesson_methods}, "kl_targets": list(F.KL_TARGETS),
         "matched": {"bt": F.matched_table(points, "bt", sft)}, "curves": {"bt": F.seed_curves(points, "bt", sft)},
         "sft": sft, "points": points, "seeds": [run.seed]}
F.print_matched(small)

# %% [markdown]
# The two units' points and envelopes (one seed):

# %%
fig = Figure(figsize=(6.5, 4.2))
ax = fig.subplots()
ax.plot([0], [sft["gold_reward"]], "k*", ms=12, label="SFT (the reference)")
for i, method in enumerate(lesson_methods):
    pts = F.points_of(points, method, "bt", run.seed)
    e = F.envelope(pts, sft)
    ax.scatter([p["kl_to_ref"] for p in pts], [p["gold_reward"] for p in pts], color=f"C{i}", alpha=0.5)
    ax.plot([k for k, _, _ in e], [g for _, g, _ in e], "-", color=f"C{i}", label=f"{F.METHODS[method].label}: envelope")
ax.axvline(kl, color="grey", ls=":", label=f"matched KL {kl:g}")
ax.set(xlabel="KL(π ‖ π_ref) per response (nats)", ylabel="mean gold reward on held-out films",
       title="Two units of the frontier study, one seed")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(run.path("frontier_lesson_units.png"), dpi=110)
print("figure:", run.path("frontier_lesson_units.png"))
show(fig)

# %% [markdown]
# ## The full study: every method, both labellings, mean ± std over seeds
# The full study takes about 30 minutes on two cores, so by default the lesson does not run it. It
# shows, in this order: the study run here (`--set full_study=true`), or one saved in this folder or
# in `runs/default` (`python -m minidpo frontier` and `ablation`), or else the study as measured for
# this project and committed with it in `data/headline.json` (seeds 0, 1, 2; the README's tables are
# made from the same file, and `python -m minidpo.tools.headline --out runs/default` remakes it from
# a folder where the study ran). It says which one it shows.
# *Predict before reading*: with noisy Bradley–Terry labels, does DPO or REINFORCE win at KL = 2?
# With deterministic labels? Where does PPO-GT — RL on the true reward — sit?

# %%
if knobs.full_study:
    result, ablation = F.run_frontier(run), run_ablation(run)
    shown = f"the full study, run in {run.out}"
else:
    found = saved_study(run, "frontier/frontier.json")
    result = read_json(found) if found else None
    ablation_file = found.with_name("ablation.json") if found else None
    ablation = read_json(ablation_file) if ablation_file and ablation_file.is_file() else None
    shown = f"the full study saved in {found.parent}" if found else None
if result is None:  # the study measured for this project, as committed
    result, ablation = headline.committed_study(read_json(shipped_file("headline.json")))
    shown = f"the study measured for this project (data/headline.json, seeds {result['seeds']}; not run here)"
print(f"Shown: {shown} ({len(result['seeds'])} seeds)")
F.print_matched(result)
fig = (plots.frontier_figure if "curves" in result else plots.matched_figure)(result, run.path("frontier_lesson.png"))
print("figure:", run.path("frontier_lesson.png"))
show(fig)

# %% [markdown]
# ## The ablation: from our setting to the paper's, one factor at a time
# Each row changes one thing from the row above: the labels (noisy → deterministic), the amount of
# data (4× more pairs), the RL algorithm (REINFORCE → PPO), the RL reward (learned → gold). Each
# row gives DPO and the RL method of that row at the same matched KL, and the paired difference
# DPO − RL over seeds. A difference is called larger than the spread only when it exceeds two
# standard errors; otherwise the honest reading is "no measurable difference".

# %%
if ablation is None:
    print("No saved ablation beside this study: `--set full_study=true`, or " + run.command("ablation"))
else:
    print_ablation(ablation)

# %% [markdown]
# *Try*: `--set matched_kl=0.5` (or set `matched_kl` in the knobs cell and re-run from there): the
# gold reward read off each envelope falls — an envelope only climbs, so a smaller KL budget buys
# less reward — and a method whose points stop short of the old KL may now have a reading.
#
# *Questions*
# 1. In the two units above, which method reaches more gold at the matched KL, and which reaches
#    further in KL?
# 2. Which row of the ablation changes the sign (or the size) of DPO − RL the most? That factor is
#    this world's answer to "why does our result differ from the paper's".
# 3. PPO-GT optimises the gold reward itself. If DPO beats it at matched KL, DPO's trade-off is
#    better even than RL with a perfect reward model — the paper's strongest claim. Does it here?
# 4. Fluency: read `fluency_mean` in `frontier.json` at the same KL. Which methods buy reward with
#    broken sentences?

# %% [markdown]
# ## Answers
# Computed from this run (1) and from the full study shown above (2–4).

# %%
reach = {m: F.envelope(F.points_of(points, m, "bt", run.seed), sft)[-1][0] for m in lesson_methods}
reached = {m: r[0] for m, r in read.items() if r}
print("1. at KL", f"{kl:g}:", ", ".join(f"{F.METHODS[m].label} {g:+.3f}" for m, g in reached.items()) or "neither reaches it",
      (f"-> {F.METHODS[max(reached, key=reached.get)].label} is higher" if len(reached) == 2 else ""),
      "; furthest in KL:", F.METHODS[max(reach, key=reach.get)].label, f"({max(reach.values()):.2f})")
if ablation is None or ablation.get("primary_kl") is None:
    print("2. needs the full ablation (no matched KL reached in every row here)")
else:
    at = str(ablation["primary_kl"])
    gaps = [r["by_kl"][at]["gap_mean"] for r in ablation["rows"]]
    jumps = [abs(b - a) for a, b in zip(gaps, gaps[1:])]
    i = max(range(len(jumps)), key=jumps.__getitem__)
    print(f"2. at KL {at}: DPO − RL per row " + ", ".join(f"{g:+.2f}" for g in gaps)
          + f"; the largest change: '{ablation['rows'][i + 1]['change']}' ({gaps[i]:+.2f} -> {gaps[i + 1]:+.2f})")
# the Predict: DPO against REINFORCE at KL 2 in each labelling (paired by seed), and PPO-GT's place
for labels, table in result["matched"].items():
    cells = {m: table[m]["2.0"] for m in ("dpo", "reinforce") if "2.0" in table.get(m, {})}
    pair = result.get("paired", {}).get(labels, {}).get("reinforce", {}).get("2.0")
    if len(cells) == 2:
        d, r = cells["dpo"], cells["reinforce"]
        print(f"Predict, labels {labels}, KL 2: DPO {d['gold_mean']:+.2f} (n={d['n']}), REINFORCE {r['gold_mean']:+.2f} "
              f"(n={r['n']})" + (f"; paired DPO − REINFORCE {pair['gap_mean']:+.2f} ± {pair['gap_std']:.2f} over {pair['n']} "
                                 "seed(s): " + ("beyond the spread" if pair["beyond_spread"] else "within the spread, "
                                                "no measurable winner") if pair else ""))
    else:
        print(f"Predict, labels {labels}, KL 2: reached by " + (", ".join(result["methods"][m] for m in cells) or "neither"))
for labels, table in result["matched"].items():  # PPO-GT's place among the methods at KL 1
    at_one = sorted(((row["1.0"]["gold_mean"], m) for m, row in table.items() if "1.0" in row), reverse=True)
    if "ppo_gt" in [m for _, m in at_one]:
        place = [m for _, m in at_one].index("ppo_gt") + 1
        print(f"Predict, labels {labels}, KL 1: PPO-GT {table['ppo_gt']['1.0']['gold_mean']:+.2f}, place {place} of "
              f"{len(at_one)}: " + ", ".join(f"{result['methods'][m]} {g:+.2f}" for g, m in at_one))
for labels, table in result["matched"].items():
    common = [k for k in map(str, result["kl_targets"]) if k in table.get("dpo", {}) and k in table.get("ppo_gt", {})]
    if common:
        k = common[-1]
        d, g = table["dpo"][k]["gold_mean"], table["ppo_gt"][k]["gold_mean"]
        print(f"3. labels {labels}, KL {k}: DPO {d:+.2f} vs PPO-GT {g:+.2f} -> "
              + ("DPO beats RL on the true reward" if d > g else "PPO-GT is ahead"))
    else:
        print(f"3. labels {labels}: DPO and PPO-GT reach no common matched KL")
    at = [k for k in map(str, result["kl_targets"]) if sum(k in row for row in table.values()) > 1]
    if at:
        k = at[-1]
        fl = {m: row[k]["fluency_mean"] for m, row in table.items() if k in row}
        worst = min(fl, key=fl.get)
        print(f"4. labels {labels}, KL {k}: fluency " + ", ".join(f"{result['methods'][m]} {f:.2f}" for m, f in fl.items())
              + f" -> lowest: {result['methods'][worst]}")

# %% [markdown]
# ## What to remember
# - Compare methods at a matched KL to the reference, on several seeds, paired by seed: a single
#   point of one run says little.
# - In this world the answer depends on the labels and on the RL algorithm: the ablation says which
#   factor moves DPO − RL, and by how much against its spread.
