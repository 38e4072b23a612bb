# %% [markdown]
# # 15 · DPO's own failure modes
# **You need** lessons 09 and 10 (a DPO run, read on held-out pairs). **You will see** why DPO costs
# fluency here, and what four remedies buy back. DPO trains a *margin*: log π(y_w)/π_ref − log π(y_l)/π_ref. Nothing in the loss says log π(y_w)
# must go up, and in practice both log-probs fall. The probability mass that leaves the labelled
# responses goes to text nobody labelled, and in this world we can see what that text is. Then the
# remedies: a larger β, conservative DPO (label smoothing), IPO, and an NLL term on the chosen
# response (RPO).
# Run: `python tutorials/15_dpo_failure_modes.py` after lesson 10 (`--fast`: a smoke run): the
# measurement by hand on held-out pairs, then every remedy trained beside plain DPO; the study's
# count of grammar failures is shown when saved here or in `runs/default`, and runs with
# `--set full_study=true` (or `python -m minidpo failure-modes`).

# %%
import torch

from minidpo import world
from minidpo.dpo import DPOConfig, pair_logps
from minidpo.evaluate import response_logps
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import lesson_knobs, show, study_result, tutorial_run
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.sampling import make_generator, sample
from minidpo.studies import failure_modes as FM

run = tutorial_run("15: DPO's failure modes and remedies")
ensure(run, "eval_sft", "dpo")
torch.set_printoptions(precision=2, sci_mode=False, linewidth=120)

# %% [markdown]
# The knobs: how many held-out pairs the table by hand prints, and whether to run the full table.

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
sft_texts = [run.tok.decode_response(r) for r in sample(sft, run.tok, prompts, make_generator(run.seed, run.device),
                                                          dtype=run.dtype)]
not_fluent = {name: sum(not world.is_fluent(p, t) for p, t in zip(prompts, ts)) / len(ts)
              for name, ts in (("SFT", sft_texts), ("DPO", texts))}
print(f"{len(texts)} DPO samples: log π/π_ref {gain.mean():+.2f} nats on average (positive: mass gained); "
      f"not fluent: SFT {not_fluent['SFT']:.2f}, DPO {not_fluent['DPO']:.2f}")
for i in gain.argsort(descending=True)[:4].tolist():
    b = world.reward_breakdown(prompts[i], texts[i])
    why = ", ".join(k for k in world.GRAMMAR_FAILURES + ("reused_word",) if b[k]) or "fluent"
    print(f"  +{gain[i]:.2f} nats  {texts[i]}  ({why}; gold {b['reward']:+.1f})")

# %% [markdown]
# ## The same by the library, and four remedies
# `failure_modes.remedy` trains DPO with one change (a `sweeps/` unit, shared with lesson 14 and
# the full study) and reads the held-out `eval/logps/*` its training logged: plain DPO's row must
# match the measurement above. Beside it: a larger β (a shorter leash); conservative DPO (label
# smoothing ε: it stops each pair at the margin β·h = log((1−ε)/ε), lesson 08); IPO (a squared loss
# that pulls h to 1/(2β) and no further); RPO (+ α·NLL of the chosen response, which should hold
# log π(y_w) up).

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
d = rows["DPO (default)"]
print(f"by hand Δ log π(y_w) {mean_w:+.4f}, the library's {d['logps_chosen_change']:+.4f}")
fig = plots.failure_modes_figure(histories, run.path("failure_modes_lesson.png"))
print("figure:", run.path("failure_modes_lesson.png"))
show(fig)

# %% [markdown]
# ## The study: what breaks in the samples
# The failure-modes study adds, to the same rows, the grammar's failures of plain DPO's samples
# counted against SFT's, failure by failure. Lesson 18's bench puts every registered loss on the
# same scale.

# %%
full, shown = study_result(run, knobs.full_study, "failure_modes/failure_modes.json",
                           lambda: FM.run_failure_modes(run), "the full table")
if full is None:
    print(f"No saved full table here or in runs/default: `--set full_study=true`, or `{run.command('failure-modes')}`.")
else:
    print("Shown:", shown)
    print_rows(full["remedies"])
    print(f"samples with each problem, SFT -> DPO (of {full['n_samples']}): " + ", ".join(
        f"{k} {full['failure_reasons_sft'].get(k, 0)} -> {full['failure_reasons_dpo'].get(k, 0)}"
        for k in world.GRAMMAR_FAILURES + ("reused_word",)))

# %% [markdown]
# *Questions*
# 1. Did DPO's log π(y_w) go up on the held-out pairs, while their margin grew?
# 2. Which remedy buys back the most fluency, and for how much gold reward?

# %% [markdown]
# ## Answers

# %%
print(f"1. Δ log π(y_w) = {mean_w:+.2f} nats while the margin moved {mean_w - mean_l:+.2f}: "
      + ("the chosen responses lost probability, the rejected lost more" if mean_w < 0 < mean_w - mean_l else
         "here the chosen responses gained" if mean_w > 0 else "the margin did not grow"))
table = rows
base = table["DPO (default)"]
best = max((n for n in table if n != "DPO (default)"), key=lambda n: table[n]["fluency"])
print(f"2. {best}: fluency {base['fluency']:.3f} -> {table[best]['fluency']:.3f}, "
      f"gold {base['gold_reward']:+.3f} -> {table[best]['gold_reward']:+.3f}, win rate {base['win_rate_vs_sft']:.3f} -> "
      f"{table[best]['win_rate_vs_sft']:.3f}")

# %% [markdown]
# ## What to remember
# - DPO's loss sees only the margin; on held-out pairs both log-probs usually fall, and the freed
#   mass goes to text no pair labelled — here, broken sentences.
# - A shorter leash (larger β), a capped margin (conservative DPO, IPO) or an NLL term on the chosen
#   response (RPO) each buy fluency back, each for some of the gold reward.
# - Report fluency beside every win rate.
