# %% [markdown]
# # 16 · DPO's own failure modes
# **You need** lessons 09 and 10 (a DPO run, read on held-out pairs). **You will see** why DPO costs
# fluency here, and what four remedies buy back at the same distance from the reference. DPO trains
# a *margin*: log π(y_w)/π_ref − log π(y_l)/π_ref. Nothing in the loss says log π(y_w) must go up,
# and both log-probs can fall (this lesson measures whether they do, on one run and on three seeds). The probability mass that leaves the labelled responses goes
# to text nobody labelled, and in this world we can see what that text is. Then the remedies: a
# larger β, conservative DPO (label smoothing), IPO, and an NLL term on the chosen response (RPO).
# Run: `python tutorials/16_dpo_failure_modes.py` after lesson 10 (`--fast`: a smoke run): the
# measurement by hand on held-out pairs, then every remedy trained beside plain DPO on one seed; the
# study (every remedy on three seeds, evaluated along training, read against DPO at the same KL) is
# read from this folder, `runs/default`, or the copy committed with minidpo, and runs with
# `--set full_study=true` (or `python -m minidpo failure-modes`).

# %%
import torch

from minidpo import world
from minidpo.dpo import DPOConfig, pair_logps
from minidpo.evaluate import response_logps
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import claim, claim_paired, lesson_knobs, show, study_result, tutorial_run
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.sampling import make_generator, sample
from minidpo.studies import failure_modes as FM

run = tutorial_run("16: DPO's failure modes and remedies")
ensure(run, "eval_sft", "dpo")
torch.set_printoptions(precision=2, sci_mode=False, linewidth=120)

# %% [markdown]
# The knobs: how many held-out pairs the table by hand prints, and whether to run the full study.

# %%
knobs = lesson_knobs(pairs=5, full_study=False)

# %% [markdown]
# ## Both log-probs fall: one measurement by hand
# DPO's loss depends only on the margin $h = \log\frac{\pi(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_{ref}(y_l)}$.
# It can grow with both log-probs falling, as long as the rejected one falls faster. Score the
# held-out pairs (films DPO never trained on) with the SFT model (= π_ref, before DPO) and with
# lesson 09's DPO policy (after): the same function that caches the reference's log-probs scores
# any model, giving log π(y_w|x) and log π(y_l|x) of every pair.

# %%
cfg = run.settings(DPOConfig)
sft, dpo = run.load_policy("sft.pt"), run.load_policy("dpo.pt")
val_pairs, _ = read_preferences(run.path("prefs_val.jsonl"))
encoded, _ = encode_pairs(run.tok, val_pairs, sft.config.block_size)
before = pair_logps(sft, encoded, run.tok.end_id, cfg.average_logps, dtype=run.dtype)  # (N, 2)
after = pair_logps(dpo, encoded, run.tok.end_id, cfg.average_logps, dtype=run.dtype)
change = after - before
print("        log π(y_w): before  after  Δ   | log π(y_l): before  after  Δ   | margin Δ")
for i in range(min(knobs.pairs, len(val_pairs))):
    (bw, bl), (aw, al), (dw, dl) = before[i].tolist(), after[i].tolist(), change[i].tolist()
    print(f"pair {i}:          {bw:7.2f} {aw:6.2f} {dw:+5.2f} |            {bl:7.2f} {al:6.2f} {dl:+5.2f} | {dw - dl:+5.2f}")
mean_w, mean_l = change[:, 0].mean().item(), change[:, 1].mean().item()
both_down = ((change[:, 0] < 0) & (change[:, 1] < 0)).float().mean().item()
print(f"all {len(val_pairs)} held-out pairs: Δ log π(y_w) = {mean_w:+.2f}, Δ log π(y_l) = {mean_l:+.2f} nats on average; "
      f"margin {mean_w - mean_l:+.2f}; both fell in {both_down:.0%} of the pairs")
claim("on this run's held-out pairs the margin grew while the chosen responses' log-probability fell",
      mean_w - mean_l > 0 > mean_w, margin=mean_w - mean_l, chosen=mean_w)

# %% [markdown]
# ## Where the mass went
# A pair whose two responses lost Δ nats each kept only e^Δ of the probability it had. The mass
# went to what DPO now *samples*: draw from the DPO policy for the same prompts, and score each
# sample under both models. Its log π/π_ref is positive on average (that average is the KL to the
# reference), and the world's grammar tells us what the favoured text is.

# %%
# log(π(y_w) + π(y_l)) per pair, before and after: the pair's mass, in nats
mass_change = torch.logsumexp(after, 1) - torch.logsumexp(before, 1)
lost = (mass_change < 0).float().mean().item()
print(f"a pair's two responses together: Δ log(π(y_w) + π(y_l)) = {mass_change.mean():+.2f} nats on average "
      f"(they keep e^Δ = {mass_change.mean().exp():.2f} of their mass); {lost:.0%} of the pairs lost mass")
prompts = [val_pairs[i]["prompt"] for i in range(min(knobs.pairs, len(val_pairs)))] * 8
ids = sample(dpo, run.tok, prompts, make_generator(run.seed, run.device), dtype=run.dtype)
texts = [run.tok.decode_response(r) for r in ids]
gain = (response_logps(dpo, run.tok, prompts, ids, dtype=run.dtype).logps
        - response_logps(sft, run.tok, prompts, ids, dtype=run.dtype).logps)
print(f"{len(texts)} DPO samples: log π/π_ref {gain.mean():+.2f} nats on average; the four it gained most on:")
for i in gain.argsort(descending=True)[:4].tolist():
    b = world.reward_breakdown(prompts[i], texts[i])
    why = ", ".join(k for k in FM.FAILURES if b[k]) or "fluent"
    print(f"  {gain[i]:+.2f} nats  {texts[i]}  ({why}; gold {b['reward']:+.1f})")

# %% [markdown]
# ## Four remedies, on one seed
# `failure_modes.remedy` trains DPO with one change (a `sweeps/` unit, shared with the diversity lesson) on this
# run's pairs and reads the held-out `eval/logps/*` its training logged: plain DPO's row must match
# the measurement above. Beside it: a larger β (a shorter leash); conservative DPO (label
# smoothing ε: it stops each pair at the margin β·h = log((1−ε)/ε), lesson 08); IPO (a squared loss
# that pulls h to 1/(2β) and no further); RPO (+ α·NLL of the chosen response, which should hold
# log π(y_w) up). One seed, and each policy at the end of its own training, at its own KL: a row
# with more fluency may simply have moved less. The study below compares them at the same KL.

# %%
names = list(FM.REMEDIES)
rows, histories = {}, {}
for name in names:
    rows[name], histories[name], _ = FM.remedy(run, name)


def print_rows(rows: dict) -> None:
    print(f"{'variant':30s} | gold   | win   | fluency | KL   | Δ log π(y_w) | Δ log π(y_l)")
    for name, r in rows.items():
        print(f"{name:30s} | {r['gold_reward']:+.3f} | {r['win_rate_vs_sft']:.3f} | {r['fluency']:.3f}   | "
              f"{r['kl_to_ref']:.2f} | {r['logps_chosen_change']:+12.2f} | {r['logps_rejected_change']:+12.2f}")


print_rows(rows)
d = rows[FM.BASE]
print(f"by hand Δ log π(y_w) {mean_w:+.4f}, the library's {d['logps_chosen_change']:+.4f}")
claim("plain DPO's row is the measurement by hand", abs(mean_w - d["logps_chosen_change"]) < 1e-3,
      by_hand=mean_w, library=d["logps_chosen_change"])
fig = plots.failure_modes_figure(histories, run.path("failure_modes_lesson.png"))
print("figure:", run.path("failure_modes_lesson.png"))
show(fig)

# %% [markdown]
# ## The study: three seeds, along training, at the same KL
# Every remedy and plain DPO on three seeds (each its own pairs), evaluated at four points along
# training. First the end of training, mean ± standard deviation over the seeds — still each at its
# own KL. Then each remedy against DPO at the same KL: both frontiers (the upper concave hull of
# each run's checkpoints, from the SFT model at KL 0) read at the largest KL both reach in that
# seed. That is the smaller of the two runs' largest KL along training, which need not be where
# either run ends: a run's KL need not grow steadily, so a remedy can be read at a KL above its
# end-of-training one, and the run that moves further is read between its checkpoints.

# %%
full, shown = study_result(run, knobs.full_study, "failure_modes/failure_modes.json",
                           lambda: FM.run_failure_modes(run), "the full study")
if full is None:
    raise SystemExit(f"error: no saved failure-modes study: `--set full_study=true`, or `{run.command('failure-modes')}`")
print("Shown:", shown)
n_seeds = len(full["seeds"])
print(f"end of training, mean ± std over {n_seeds} seeds:")
print(f"{'variant':30s} | gold           | fluency        | KL            | Δ log π(y_w)")
for name, r in full["remedies"].items():
    print(f"{name:30s} | {r['gold_reward']['mean']:+.3f} ± {r['gold_reward']['std']:.3f} | {r['fluency']['mean']:.3f} ± "
          f"{r['fluency']['std']:.3f} | {r['kl_to_ref']['mean']:5.2f} ± {r['kl_to_ref']['std']:.2f} | "
          f"{r['logps_chosen_change']['mean']:+.2f} ± {r['logps_chosen_change']['std']:.2f}")
FM.print_matched(full)
show(plots.remedies_figure(full))
base = full["remedies"][FM.BASE]
claim_paired("plain DPO's held-out log π(y_w) from start to end", "the end", base["logps_chosen_change"]["values"],
             "the start", [0.0] * n_seeds, "<")
chosen_d, rejected_d = base["logps_chosen_change"]["values"], base["logps_rejected_change"]["values"]
claim("plain DPO: both held-out log-probs fall, log π(y_w) and log π(y_l), in every seed, and log π(y_l) falls further",
      all(w < 0 and l < w for w, l in zip(chosen_d, rejected_d)),
      chosen=", ".join(f"{v:+.2f}" for v in chosen_d), rejected=", ".join(f"{v:+.2f}" for v in rejected_d))
end_kl = {name: r["kl_to_ref"]["mean"] for name, r in full["remedies"].items()}
nearest = min((k for k in end_kl if k != FM.BASE), key=end_kl.get)
kl_ratio = end_kl[nearest] / end_kl[FM.BASE]
claim(f"{nearest} ends far nearer the reference than DPO: at {kl_ratio:.2f} of DPO's KL (means over the seeds)",
      kl_ratio < 0.5, remedy_kl=end_kl[nearest], dpo_kl=end_kl[FM.BASE])
broken = [r.get("broken", 0) for r in full["failure_reasons"]["dpo"]]
claim_paired("samples the grammar rejects as broken, of the same held-out prompts", "DPO", broken, "SFT",
             [full["failure_reasons"]["sft"].get("broken", 0)] * n_seeds, ">")

# %% [markdown]
# Each remedy against DPO at the same KL. *Predict* first: a remedy that ends at a small fraction of
# DPO's KL keeps most of the SFT model's fluency by moving less; does it keep more than DPO does at
# that KL?

# %%
expect = {"larger β (2.0)": ("=", "="), "conservative DPO (ε = 0.2)": ("=", "="), "IPO (β = 0.1)": ("=", "="),
          "RPO: + NLL on chosen (α = 1)": (">", "=")}  # (gold, fluency) against DPO: what the committed study shows
verdicts = {}
for name, m in full["matched"].items():
    short = name.split(":")[0].split(" (")[0]
    print(f"{name}: read at KL " + ", ".join(f"{k:.2f}" for k in m["kl"]))
    verdicts[name] = (claim_paired("gold reward at the same KL", short, m["a_gold"], "DPO", m["b_gold"], expect[name][0]),
                      claim_paired("fluency at the same KL", short, m["a_fluency"], "DPO", m["b_fluency"], expect[name][1]))

# %% [markdown]
# *Questions*
# 1. Did DPO's log π(y_w) go up on the held-out pairs, while their margin grew?
# 2. At the same KL as DPO, which remedy keeps the most fluency, and what does it cost (or buy) in gold
#    reward?

# %% [markdown]
# ## Answers

# %%
print(f"1. this run: Δ log π(y_w) = {mean_w:+.2f} nats while the margin moved {mean_w - mean_l:+.2f}; over the "
      f"study's {n_seeds} seeds: Δ log π(y_w) = " + ", ".join(f"{v:+.2f}" for v in base["logps_chosen_change"]["values"])
      + " (the claims above).")
best = max(verdicts, key=lambda k: verdicts[k][1].mean)
g, f = verdicts[best]
print(f"2. {best}: fluency − DPO's at the same KL {f.describe()} ({f.verdict}); gold − DPO's {g.describe()} ({g.verdict}).")

# %% [markdown]
# ## What to remember
# - DPO's loss sees only the margin; on held-out pairs both log-probs usually fall, and the freed
#   mass goes to text no pair labelled — here, broken sentences.
# - A remedy that ends nearer the reference keeps fluency by moving less. Compare it with DPO at the
#   same KL, on DPO's own checkpoints along training, before crediting the remedy.
# - A remedy can change which way the policy moves as well as how far: at the same KL, read the gold
#   reward beside the fluency, since a remedy may buy one without the other.
# - Report fluency beside every win rate, and the KL beside both.
