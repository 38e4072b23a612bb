# %% [markdown]
# # 13 · The paper's Figure 2, and why it comes out the way it does here
# **You need** lessons 06 and 09 (a REINFORCE run and a DPO run, each read by gold reward and KL).
# **You will see** how two methods are compared fairly — on the reward-vs-KL frontier, at the same
# KL, paired by seed — and what that comparison says in this world, and what it does not.
#
# The DPO paper's Figure 2 (left) plots, for every method and hyperparameter, the reward reached
# against the KL divergence to the reference: a method whose points lie higher at the same KL makes
# the better trade. On IMDb the paper found DPO's frontier above PPO's, even above PPO on the
# ground-truth reward. The full study redoes it on our world with the paper's methods and two more,
# each over a small grid of β, on three seeds, under two ways of labelling the pairs:
#
# - **DPO** (lessons 08–09) and **REINFORCE** (lesson 06, with its leave-one-out baseline).
# - **PPO** (the PPO lesson): RL on the reward model's score minus β·KL, with a learned value model
#   $V$ for the baseline (advantages by GAE) and the clipped surrogate
#   $\min(\rho A,\ \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon)A)$, $\rho = \pi_\theta/\pi_{\text{old}}$ per token,
#   so each batch of samples can be used for several updates.
# - **PPO-GT**: the same PPO, trained on the gold reward $r^*$ instead of the reward model — RL with
#   a perfect reward model, the paper's strongest baseline.
# - **GRPO** (DeepSeekMath): no value model; each prompt gets $K$ samples and sample $i$'s advantage is
#   its reward against its group's, $A_i = (r_i - \mathrm{mean}_j r_j)/\mathrm{std}_j r_j$ (the group
#   mean includes sample $i$, so the numerator is lesson 06's leave-one-out advantage times
#   $(K-1)/K$; then divided by the group's spread), with PPO's clipped surrogate and a β·KL term in
#   the loss.
# - **Preferred-FT**: supervised fine-tuning on the chosen responses only,
#   $-\log\pi(y_w|x)/|y_w|$; the rejected response is ignored.
# - **Unlikelihood** (Welleck et al. 2019): Preferred-FT plus a push on every token of the
#   rejected response, $-\frac{1}{|y_w|}\log\pi(y_w|x) - \frac{\alpha}{|y_l|}\sum_t \log(1-\pi(y_{l,t}|x, y_{l,<t}))$.
#
# Run: `python tutorials/13_frontier.py`. By default the lesson trains a lecture-sized piece of the
# study (two of its units: DPO and REINFORCE at one β each, one seed, this project's labels), builds
# a frontier from them by hand, and then reads the full study: yours, if this folder (or
# `runs/default`) holds it, else the one committed with minidpo (data/studies/). The full study
# is long: `--set full_study=true`, or `python -m minidpo frontier` and `python -m minidpo ablation`
# with the same `--out` (every unit is reused afterwards, an interrupted run resumes). `--fast` is
# a smoke run.

# %%
from collections import Counter
from dataclasses import replace

from matplotlib.figure import Figure

from minidpo.harness import compare as C, headline, plots
from minidpo.harness.tutorial import claim, claim_paired, lesson_knobs, show, study_result, tutorial_run
from minidpo.checkpoint import read_json
from minidpo.preferences import PrefsConfig
from minidpo.studies import frontier as F
from minidpo.studies.ablation import print_ablation, run_ablation

run = tutorial_run("13: the reward-vs-KL frontier and the ablation")

# %% [markdown]
# The knobs: the KL at which the frontiers are compared, and whether to run the full study here.

# %%
knobs = lesson_knobs(matched_kl=1.0, full_study=False)

# %% [markdown]
# ## Two units of the study
# A unit is one method at one grid point (β) in one labelling condition with one seed: trained
# from the SFT model and evaluated at points along its training (at ⅛, ¼, ½ and all of it) on the
# held-out films. Each point prints three numbers of 400 samples of the policy:
# **KL** — the sequence-level KL to the reference, the mean over samples of
# $\sum_t[\log\pi(y_t|\cdot) - \log\pi_{\text{ref}}(y_t|\cdot)]$ (nats per response);
# **gold** — the mean gold reward $r^*$; **fluency** — the fraction of samples the world's grammar
# accepts. Here: DPO (β 0.5, two epochs over the pairs) and REINFORCE (β 0.02, 2,560 sampled
# responses), the run's own pairs and reward model. They are units of the full study, which reuses them.

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
# ## A frontier by hand: the upper concave hull
# Which (KL, gold) trades can we reach with these runs? Every evaluated point, of course. But also
# every point *between* two of them: take policies $\pi_1$ and $\pi_2$ and, for each prompt, answer
# with $\pi_1$ with probability λ and with $\pi_2$ otherwise (one coin per response). The mixture
# earns exactly $\lambda g_1 + (1-\lambda) g_2$ of gold, since the gold reward is an average over
# responses; and KL(π‖π_ref) is convex in π, so the mixture's KL to the reference is **at most**
# $\lambda\,\mathrm{KL}_1 + (1-\lambda)\,\mathrm{KL}_2$. So the whole chord between two points is
# reachable (at that KL or less), and the frontier of a set of runs is the **upper concave hull**
# of their points and the SFT point (KL 0, λ = 0 included). One more rule: a KL budget need not be
# spent, so past its best point the frontier stays flat.
#
# The hull by hand (Andrew's monotone chain): walk through the points in order of KL; before adding a
# point, drop the last kept point while it lies on or under the chord from the one before it to the
# new point. Stop at the highest gold.

# %%
def under_chord(a, b, c):
    """Does b lie on or under the chord from a to c? (the cross product of a→b and a→c is ≥ 0)"""
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) >= 0


dpo_points = sorted((p["kl_to_ref"], p["gold_reward"], p["fluency"])
                    for p in F.points_of(points, "dpo", "bt", run.seed) if p["kl_to_ref"] > 0)
start = (0.0, sft["gold_reward"], sft["fluency"])
best = max(dpo_points + [start], key=lambda q: (q[1], -q[0]))
hand = [start]
for q in (q for q in dpo_points if q[0] <= best[0]):
    while len(hand) >= 2 and under_chord(hand[-2], hand[-1], q):
        dropped = hand.pop()
        print(f"  KL {dropped[0]:5.2f}, gold {dropped[1]:+.3f}: dropped (under the chord to KL {q[0]:.2f})")
    hand.append(q)
if dpo_points and dpo_points[-1][0] > best[0]:  # flat from the best point to the furthest KL reached
    hand.append((dpo_points[-1][0], best[1], best[2]))
print("DPO's hull: " + " -> ".join(f"({k:.2f}, {g:+.3f})" for k, g, _ in hand))

# %% [markdown]
# The old way, a **running maximum** (keep a point only if it beats every point at lower KL, join the
# kept points with straight lines), draws straight lines *under* some chords the mixture reaches;
# add a run and it can even fall (the full study shows a case below). The hull is never below it:

# %%
def running_max(pts, start):
    """The old envelope: keep each point that beats every point at lower KL."""
    kept = [start]
    for q in sorted((p["kl_to_ref"], p["gold_reward"], p["fluency"]) for p in pts if p["kl_to_ref"] > 0):
        if q[1] > kept[-1][1]:
            kept.append(q)
    return kept


running = running_max(F.points_of(points, "dpo", "bt", run.seed), start)
kl = knobs.matched_kl
on_hull, on_running = C.at_kl(hand, kl), C.at_kl(running, kl)
if on_hull and on_running:
    claim(f"at KL {kl:g} DPO's hull is at least its running maximum", on_hull[0] >= on_running[0] - 1e-12,
          hull=on_hull[0], running_max=on_running[0])

# %% [markdown]
# **Reading it at a matched KL.** Find the segment (k₀, g₀)–(k₁, g₁) that contains the KL k and
# interpolate: $g(k) = g_0 + \frac{k - k_0}{k_1 - k_0}(g_1 - g_0)$ — the gold of the mixture of the two
# end points whose KL is at most k. Beyond the last point there is no frontier: it is not extrapolated.
#
# A caution a sceptic would add: each point is a mean over 400 samples with its own noise, and a hull
# keeps the highest of them, so it leans upward by about that noise — the more points, the more. The
# study gives every method the same number of points (two β, four checkpoints each; Preferred-FT and
# Unlikelihood have no β and one run) and compares methods seed by seed, never one hull's luck against
# another's average.

# %%
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
# `frontier.hull` (`harness.compare.frontier`) and `frontier.at_kl` are the two functions every table
# of the study, and every comparison in lessons 14–21, uses.

# %%
env = F.hull(F.points_of(points, "dpo", "bt", run.seed), sft)
got = F.at_kl(env, kl)
library_gold = got[0] if got else None
claim("the library's hull is the one built by hand", env == hand, vertices=len(env))
read = {m: F.at_kl(F.hull(F.points_of(points, m, "bt", run.seed), sft), kl) for m in lesson_methods}
reach = {m: F.hull(F.points_of(points, m, "bt", run.seed), sft)[-1][0] for m in lesson_methods}
print(f"each hull at KL {kl:g}: " + ", ".join(f"{F.METHODS[m].label} " + (f"gold {r[0]:+.3f}" if r else "beyond its last point")
                                         for m, r in read.items())
      + "; furthest KL reached: " + ", ".join(f"{F.METHODS[m].label} {k:.2f}" for m, k in reach.items()))

# %% [markdown]
# The two units' points and hulls (one seed):

# %%
fig = Figure(figsize=(6.5, 4.2))
ax = fig.subplots()
ax.plot([0], [sft["gold_reward"]], "k*", ms=12, label="SFT (the reference)")
for i, method in enumerate(lesson_methods):
    pts = F.points_of(points, method, "bt", run.seed)
    e = F.hull(pts, sft)
    ax.scatter([p["kl_to_ref"] for p in pts], [p["gold_reward"] for p in pts], color=f"C{i}", alpha=0.5)
    ax.plot([k for k, _, _ in e], [g for _, g, _ in e], "-", color=f"C{i}", label=f"{F.METHODS[method].label}: hull")
ax.plot([k for k, _, _ in running], [g for _, g, _ in running], ":", color="C0", label="DPO: running maximum")
ax.axvline(kl, color="grey", ls=":", label=f"matched KL {kl:g}")
ax.set(xlabel="KL(π ‖ π_ref) per response (nats)", ylabel="mean gold reward on held-out films",
       title="Two units of the frontier study, one seed")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(run.path("frontier_lesson_units.png"), dpi=110)
print("figure:", run.path("frontier_lesson_units.png"))
show(fig)

# %% [markdown]
# One seed is one draw of the pairs, the reward model and the training noise: whichever hull is
# higher here, it says nothing yet about the methods. The full study pairs three.

# %%
if read["dpo"] and read["reinforce"]:
    one = C.paired([read["dpo"][0]], [read["reinforce"][0]])
    print(f"DPO − REINFORCE at KL {kl:g}, this seed: {one.describe()}")

# %% [markdown]
# ## The full study: every method, both labellings, three seeds
# It takes hours on two busy cores, so by default the lesson reads a saved one: the study run here
# (`--set full_study=true`), or one saved in this folder or in `runs/default` (`python -m minidpo
# frontier` and `ablation`), or else the study committed with minidpo (data/studies/, the run that
# made the README's tables). It says which.
#
# Budgets first, since a frontier traced along training reaches the further the more a run spends:
# every RL unit samples the same 2,560 responses; DPO makes two passes over the pairs, as the
# pipeline's DPO does. The pipeline's own RL stages sample more (REINFORCE 9,600, PPO 6,400); they
# are the marked single points of the figure, and the ablation below gives REINFORCE their budget.
# *Predict before reading*: with noisy Bradley–Terry labels, is DPO above REINFORCE at KL 1?
# With deterministic labels? Where does PPO-GT — RL on the true reward — sit?

# %%
result, shown = study_result(run, knobs.full_study, "frontier/frontier.json", lambda: F.run_frontier(run))
ablation, shown_ablation = study_result(run, knobs.full_study, "frontier/ablation.json", lambda: run_ablation(run),
                                        "the ablation")
if result is None:
    print("No full study here: `--set full_study=true`, or " + run.command("frontier"))
else:
    print(f"Shown: {shown} ({len(result['seeds'])} seeds)")
    F.print_matched(result)
    fig = plots.frontier_figure(result, run.path("frontier_lesson.png"))
    print("figure:", run.path("frontier_lesson.png"))
    show(fig)

# %% [markdown]
# ## Reading it: the same KL, the same seed, the spread of the difference
# Two means of the first table at the same KL can come from different seeds, and their ± is the
# spread of each method over seeds, most of which the two share (a seed with easy pairs is easy for
# both). So a comparison reads both hulls at the same KL **in each seed**, takes the difference,
# and asks whether the 95 % interval of its mean over the seeds (Student t: with 3 seeds the mean
# ± 4.30 standard errors) excludes 0. When it covers 0, the honest reading is "no measurable
# difference" — not "a tie", not "DPO wins". With three seeds the intervals are wide; that is what
# three seeds buy (Agarwal et al. 2021).

# %%
SEEDS = result["seeds"] if result else []


def gold(method: str, labels: str, at: float) -> list:
    """Each seed's hull of `method` read at KL `at` (None where that seed's hull does not reach it)."""
    return [r[0] if r else None for r in F.readings(result["points"], method, labels, at, result["sft"], seed_list=SEEDS)]


def compare(what: str, a: str, a_values: list, b: str, b_values: list, expect: str):
    """claim_paired where at least one seed has both readings; else say that none has."""
    if not any(x is not None and y is not None for x, y in zip(a_values, b_values)):
        print(f"  {what}: no seed's hulls of {a} and {b} both reach it")
        return None
    return claim_paired(what, a, a_values, b, b_values, expect)


# DPO against each method at KL 1, paired by seed: the reading this study supports (a claim each)
EXPECT_KL1 = {("bt", "reinforce"): ">", ("bt", "ppo"): "=", ("bt", "grpo"): "=",
              ("deterministic", "reinforce"): "=", ("deterministic", "ppo"): "=", ("deterministic", "grpo"): "=",
              "ppo_gt": "="}
if result:
    print("Predict, answered: DPO against each method at KL 1, paired by seed:")
    for labels in result["labels"]:
        for method in ("reinforce", "ppo", "grpo"):
            compare(f"labels {labels}, gold at KL 1", "DPO", gold("dpo", labels, 1.0),
                    result["methods"][method], gold(method, labels, 1.0), EXPECT_KL1[(labels, method)])
    compare("gold at KL 1 (PPO-GT never sees a label; DPO's deterministic pairs)", "DPO",
            gold("dpo", "deterministic", 1.0), "PPO-GT", gold("ppo_gt", "deterministic", 1.0), EXPECT_KL1["ppo_gt"])

# %% [markdown]
# ## Why a hull: a measured case
# With deterministic labels, DPO at β = 0.5 alone, and DPO over β ∈ {0.1, 0.5} (the frontier's grid),
# each read at KL 1, mean over the seeds. A frontier over more runs must be at least as high: every
# run of the smaller set is still there. The hull keeps that rule by construction (checked below);
# a running maximum joined by straight lines does not in general — fed random points, adding one
# point lowers its reading by up to 1.2 gold (the test suite's case) — though on these points the
# two may well agree (printed below, whichever way it comes out).

# %%
if result:
    sft_point = (0.0, result["sft"]["gold_reward"], result["sft"]["fluency"])
    case = {}
    for name, pick in (("β 0.5 alone", lambda p: p["beta"] == 0.5), ("β ∈ {0.1, 0.5}", lambda p: True)):
        for how, build in (("hull", lambda pts: C.frontier(pts, sft_point)), ("running max", lambda pts: running_max(pts, sft_point))):
            values = [C.at_kl(build([p for p in F.points_of(result["points"], "dpo", "deterministic", s) if pick(p)]), 1.0)
                      for s in SEEDS]
            case[(name, how)] = C.mean_std([v[0] for v in values if v])[0] if all(values) else None
            print(f"  DPO {name:15s} {how:12s} at KL 1: " + (f"{case[(name, how)]:+.4f}" if case[(name, how)] is not None else "-"))
    if None not in case.values():
        lower = case[("β ∈ {0.1, 0.5}", "running max")] < case[("β 0.5 alone", "running max")]
        print("  here the running maximum over both β " + ("reads BELOW" if lower else "does not read below")
              + " β = 0.5 alone")
        claim("the hull over both β reads at least β = 0.5 alone", case[("β ∈ {0.1, 0.5}", "hull")] >= case[("β 0.5 alone", "hull")],
              both=case[("β ∈ {0.1, 0.5}", "hull")], alone=case[("β 0.5 alone", "hull")])

# %% [markdown]
# ## The budget: the pipeline's own runs against the frontier
# The pipeline's REINFORCE and PPO sample 9,600 and 6,400 responses, 2.5–3.75× a frontier unit's,
# and at their own β. Each is one run of one seed: placed against DPO's hull in the same seed at the
# same KL, it shows what a larger budget *may* do — one seed, no interval, so not a result yet.

# %%
if result and result.get("pipeline"):
    for name, p in result["pipeline"].items():
        dpo_there = C.at_kl(F.hull(F.points_of(result["points"], "dpo", p["labels"], p["seed"]), result["sft"]), p["kl_to_ref"])
        spend = headline.run_budget(p)
        print(f"  pipeline {p['label']:9s} (β {p['beta']:g}, {spend}): KL {p['kl_to_ref']:.2f}, gold {p['gold_reward']:+.3f}; "
              "DPO's hull there, same seed: " + (f"{dpo_there[0]:+.3f}" if dpo_there else "beyond its last point"))
    rl = result["pipeline"]["rlhf"]
    dpo_there = C.at_kl(F.hull(F.points_of(result["points"], "dpo", rl["labels"], rl["seed"]), result["sft"]), rl["kl_to_ref"])
    reinforce_there = C.at_kl(F.hull(F.points_of(result["points"], "reinforce", rl["labels"], rl["seed"]), result["sft"]),
                              rl["kl_to_ref"])
    if dpo_there:
        claim("one seed: the pipeline's REINFORCE lies above DPO's hull at its KL", rl["gold_reward"] > dpo_there[0],
              reinforce=rl["gold_reward"], dpo=dpo_there[0], kl=rl["kl_to_ref"])
    if reinforce_there:
        claim("one seed: the pipeline's REINFORCE lies above the frontier's REINFORCE hull (2,560 samples) at its KL",
              rl["gold_reward"] > reinforce_there[0], pipeline=rl["gold_reward"], frontier=reinforce_there[0])

# %% [markdown]
# ## The ablation: from our setting to the paper's, one factor at a time
# Each row changes one thing from the row above, for both methods where it has a counterpart:
# REINFORCE's budget (2,560 → the pipeline's 9,600 samples; DPO samples nothing and keeps its two
# epochs), the labels (noisy → deterministic), the data (4× the pairs for DPO and for the reward
# model, at the same number of optimisation steps for every learner). (The algorithm, REINFORCE →
# PPO, and the reward, learned → gold, would be two more rows; at 9,600 samples on 4× the pairs they
# are six PPO runs more than this study spends — the frontier above compares PPO and PPO-GT with DPO
# at matched KL instead.) Each row gives DPO − RL at one matched KL,
# paired by seed, and the row's **step**: its DPO − RL minus the row above's, paired by seed — what
# that one factor did to the gap.
#
# What it cannot say: the steps are measured in this order only. Change the labels first and the
# budget second, and the budget's step may differ (factors interact); a step whose interval covers
# 0 is not "no effect", only none measurable with three seeds; and a factor the chain never varies
# (DPO's epochs, β, the model size) is not ruled out.

# %%
if ablation is None:
    print("No saved ablation: `--set full_study=true`, or " + run.command("ablation"))
else:
    print(f"Shown: {shown_ablation}")
    print_ablation(ablation)
    fig = plots.ablation_figure(ablation, run.path("ablation_lesson.png"))
    show(fig)

# %% [markdown]
# *Try*: `--set matched_kl=0.5` (or set `matched_kl` in the knobs cell and re-run from there): the
# gold reward read off each hull falls — a hull only climbs, so a smaller KL budget buys less reward
# — and a method whose points stop short of the old KL may now have a reading.
#
# *Questions*
# 1. In the two units above, which method reaches more gold at the matched KL, and which reaches
#    further in KL? What can one seed tell you about the methods?
# 2. Which rows of the ablation move DPO − RL by more than their spread? What can a one-at-a-time
#    chain say about *why* our result differs from the paper's, and what can it not?
# 3. PPO-GT optimises the gold reward itself. If DPO beats it at matched KL, DPO's trade-off is
#    better even than RL with a perfect reward model — the paper's strongest claim. Does it here?
# 4. Fluency: read `fluency_mean` in `frontier.json` at the same KL. Which methods buy reward with
#    broken sentences?

# %% [markdown]
# ## Answers
# Computed from this run (1) and from the full study shown above (2–4).

# %%
# 1. the two units trained here: one seed, so a reading of this seed, not of the methods
if read["dpo"] and read["reinforce"]:
    claim(f"1. at KL {kl:g}, in this one seed, DPO's hull is above REINFORCE's (one seed: no spread to judge by)",
          read["dpo"][0] > read["reinforce"][0], dpo=read["dpo"][0], reinforce=read["reinforce"][0])
claim("1. REINFORCE's points reach further in KL than DPO's, in this seed", reach["reinforce"] > reach["dpo"],
      reinforce=reach["reinforce"], dpo=reach["dpo"])


def row_gaps(row: dict, at: str) -> list:
    """DPO − RL of one ablation row at KL `at`, per seed (None where a hull does not reach it)."""
    c = row["by_kl"].get(at)
    if not c:
        return []
    return [d - r if d is not None and r is not None else None for d, r in zip(c["per_seed"]["dpo"], c["per_seed"]["rl"])]


# 2. each row's gap and each row's step (its gap minus the row above's), paired by seed: the readings
ROW_EXPECT = {0: ">", 1: ">", 2: ">", 3: ">"}
STEP_EXPECT = {1: "=", 2: "=", 3: "="}
if ablation and ablation.get("primary_kl") is not None:
    at, rows = str(ablation["primary_kl"]), ablation["rows"]
    for i, row in enumerate(rows):
        gaps = row_gaps(row, at)
        compare(f"2. row {i} ({row['change']}), gold at KL {at}", "DPO", [row["by_kl"][at]["per_seed"]["dpo"][s] for s in range(len(gaps))],
                row["rl_label"], [row["by_kl"][at]["per_seed"]["rl"][s] for s in range(len(gaps))], ROW_EXPECT.get(i, "="))
    for i in range(1, len(rows)):
        compare(f"2. step {i} ({rows[i]['change']}), DPO − RL at KL {at}", f"row {i}", row_gaps(rows[i], at),
                f"row {i - 1}", row_gaps(rows[i - 1], at), STEP_EXPECT.get(i, "="))
else:
    print("2. needs the full ablation (no matched KL reached in every row here)")

# 3. the paper's strongest claim: DPO above PPO-GT at matched KL (deterministic labels, the paper's)
PPO_GT_EXPECT = {0.5: "=", 1.0: "=", 2.0: "="}
if result:
    for at_kl, expect in PPO_GT_EXPECT.items():
        compare(f"3. gold at KL {at_kl:g}, deterministic labels", "DPO", gold("dpo", "deterministic", at_kl),
                "PPO-GT", gold("ppo_gt", "deterministic", at_kl), expect)

# 4. fluency at KL 1: each method's hull read for fluency, mean over the seeds; DPO against the RL methods paired
FLUENCY_EXPECT = {"reinforce": "=", "ppo": "="}
if result:
    for labels in result["labels"]:
        table = result["matched"][labels]
        print(f"4. labels {labels}, fluency at KL 1 (mean over the seeds reaching it): "
              + ", ".join(f"{result['methods'][m]} {row['1.0']['fluency_mean']:.3f}" for m, row in table.items() if "1.0" in row))
    fluency = lambda m, labels: [r[1] if r else None for r in F.readings(result["points"], m, labels, 1.0, result["sft"], seed_list=SEEDS)]
    for method, expect in FLUENCY_EXPECT.items():
        compare("4. fluency at KL 1, Bradley–Terry labels", "DPO", fluency("dpo", "bt"), result["methods"][method],
                fluency(method, "bt"), expect)

# %% [markdown]
# ## What to remember
# - A frontier over runs is the upper concave hull of their (KL, gold) points with the reference:
#   a mixture of two policies earns the mix of their gold for at most the mix of their KL, so
#   adding a run can raise the frontier, never lower it.
# - Compare two methods at the same KL, seed by seed, and read the interval of the paired
#   difference over ≥ 3 seeds; "no measurable difference" when it covers 0.
# - Budgets move frontiers: compare methods at budgets you state, and vary them before crediting
#   a method (Henderson et al. 2018). What the ablation found here is in its table above.
