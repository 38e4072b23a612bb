# %% [markdown]
# # 10 · Reading a DPO run
# **You need** lessons 05 and 09 (the reward model; one DPO step, and the run it trained — if it
# has not run here, this lesson trains the run first). **You will see** the default DPO run read from step 0 to the end on
# held-out pairs, with the metric names of the DPO reference code and TRL; the policy's samples
# on films it never trained on, beside the SFT model's; and the implicit reward β·log π/π_ref used
# as a classifier beside the reward model and the oracle. Watch `logps/chosen`: DPO trains the
# *margin*, and the probability mass it frees goes somewhere no label looked at, so fluency is
# reported beside every win rate. And read the curves against each other: a margin that keeps
# growing does not mean a policy that keeps improving.
# Run: `python tutorials/10_reading_a_dpo_run.py` (`--fast`: seconds).

# %%
import torch

from minidpo import world
from minidpo.checkpoint import read_json
from minidpo.data import collate, pair_batch, prompt_and_response_rows
from minidpo.dpo import DPOConfig, cached_reference_logps, pair_logps
from minidpo.evaluate import first_per_prompt, response_logps
from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.compare import paired
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import claim, show, tutorial_run
from minidpo.model import sequence_logps
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.reward_model import load_reward_model, score
from minidpo.sampling import make_generator, sample

run = tutorial_run("10: reading a DPO run")
ensure(run, "eval_sft", "prefs", "reward_model")
cfg = run.settings(DPOConfig)

# %% [markdown]
# ## The whole run
# `stage_dpo` is lesson 09's step in a loop over the configured epochs (two by default) at the default β, with a learning-rate
# warmup and cosine decay, and the held-out pairs scored at step 0 and every 20 steps. The metric names
# are those of the DPO reference code and TRL. A training batch is a different batch every step,
# so its metrics are noisy (faint in the figure); the held-out pairs are the same every time, so
# their curves say what the policy did. What a healthy run does: `eval/loss` falls from ln 2,
# `eval/rewards/accuracies` rises, and `eval/rewards/margins` — `rewards/chosen` minus
# `rewards/rejected`, both 0 at step 0 — grows. Each of the two rewards may rise or fall on its own:
# only their difference is trained.
# *Question*: will the held-out `logps/chosen` go up?

# %%
m = P.stage_dpo(run)
evals = [r for r in m["history"] if "eval/loss" in r]
start, end = evals[0], evals[-1]
print(f"{m['steps']} steps in {m['seconds']:.0f}s at β = {m['config']['beta']}; reference log-probs read from the "
      f"cache: {m['reference_logps_cached']}")
print(f"held-out pairs, step {start['step']} -> step {end['step']}:")
for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
          "logps/chosen", "logps/rejected"):
    print(f"  eval/{k:20s} {start['eval/' + k]:+.3f} -> {end['eval/' + k]:+.3f}")
chosen_change = end["eval/logps/chosen"] - start["eval/logps/chosen"]
rejected_change = end["eval/logps/rejected"] - start["eval/logps/rejected"]
claim("the held-out loss fell below ln 2 and the margin grew", end["eval/loss"] < start["eval/loss"]
      and end["eval/rewards/margins"] > 0, loss=round(end["eval/loss"], 3), margin=round(end["eval/rewards/margins"], 3))
claim("rewards/chosen ends above rewards/rejected", end["eval/rewards/chosen"] > end["eval/rewards/rejected"],
      chosen=round(end["eval/rewards/chosen"], 3), rejected=round(end["eval/rewards/rejected"], 3))
claim("here both rewards fell below 0: the policy lowered both held-out log-probs, the rejected more",
      end["eval/rewards/chosen"] < 0 and end["eval/rewards/rejected"] < end["eval/rewards/chosen"],
      chosen=round(end["eval/rewards/chosen"], 3), rejected=round(end["eval/rewards/rejected"], 3))
fig = plots.dpo_metrics_figure(m["history"], run.path("dpo_metrics.png"))
print("figure:", run.path("dpo_metrics.png"))
show(fig)

# %% [markdown]
# **Read the figure.** The held-out curves, step by step, then the run cut in two halves: how much
# does each curve move in the first half, and how much in the second? (The accuracy starts from ½
# once ties count ½: at step 0 every pair is a tie. It cannot go far: the labels are noisy, and even
# the gold reward scores only the oracle's accuracy on them, printed below.)

# %%
for r in evals:
    print(f"  step {r['step']:4d}: accuracy {r['eval/rewards/accuracies']:.3f}, margin {r['eval/rewards/margins']:+.3f}, "
          f"logps/chosen {r['eval/logps/chosen']:+.3f}, logps/rejected {r['eval/logps/rejected']:+.3f}")
plateau = max((r for r in evals if r["step"] <= m["steps"] / 2), key=lambda r: r["step"])  # the middle eval
first_gain = plateau["eval/rewards/accuracies"] - 0.5
second_gain = end["eval/rewards/accuracies"] - plateau["eval/rewards/accuracies"]
print(f"first half (steps 0-{plateau['step']}): accuracy ½ -> {plateau['eval/rewards/accuracies']:.3f} ({first_gain:+.3f}), "
      f"margin {plateau['eval/rewards/margins']:+.3f}; second half: accuracy {second_gain:+.3f}, margin "
      f"{end['eval/rewards/margins'] - plateau['eval/rewards/margins']:+.3f}, logps/chosen "
      f"{end['eval/logps/chosen'] - plateau['eval/logps/chosen']:+.3f}, logps/rejected "
      f"{end['eval/logps/rejected'] - plateau['eval/logps/rejected']:+.3f}")
claim("the ranking improves mostly early: the accuracy gains more in the first half than in the second",
      first_gain > second_gain, first_half=round(first_gain, 3), second_half=round(second_gain, 3))
claim("yet in the second half the margin still grows", end["eval/rewards/margins"] > plateau["eval/rewards/margins"],
      margin_then=round(plateau["eval/rewards/margins"], 3), margin_end=round(end["eval/rewards/margins"], 3))
claim("and both held-out log-probs still fall, the rejected more than the chosen",
      end["eval/logps/chosen"] < plateau["eval/logps/chosen"] and end["eval/logps/rejected"] < plateau["eval/logps/rejected"]
      and plateau["eval/logps/rejected"] - end["eval/logps/rejected"] > plateau["eval/logps/chosen"] - end["eval/logps/chosen"],
      chosen_fell=round(plateau["eval/logps/chosen"] - end["eval/logps/chosen"], 3),
      rejected_fell=round(plateau["eval/logps/rejected"] - end["eval/logps/rejected"], 3))

# %% [markdown]
# So late in the run the accuracy gains less than it did early, while the margin still widens —
# by pushing both log-probs down, the rejected further (the claims above). A growing margin says
# the loss is still falling, not that the policy still improves at the task: a run can keep
# "improving" its margins while it only moves probability away from the labelled responses. Read the accuracy for the ranking, the margin
# for its confidence, and the log-probs for the price — then the samples, below.


# %% [markdown]
# ## On the held-out films
# Samples at temperature 1 on films never trained on, scored by the gold reward; the win rate
# compares them with the SFT model's samples of the same prompts, drawn independently (another
# seed: lesson 06 says why), ties ½. The side-by-side lines below are therefore two independent
# draws for one film, not the same sample before and after training.

# %%
ev = P.stage_eval_dpo(run)
sft = P.stage_eval_sft(run)
print(f"DPO: gold {ev['gold_reward']:+.3f} (SFT {sft['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f} (SFT {sft['fluency']:.3f})")
claim("the DPO policy beats the SFT model under the gold reward (win rate above ½)",
      ev["win_rate_vs_sft"] > 0.5 and ev["gold_reward"] > sft["gold_reward"], win_rate=round(ev["win_rate_vs_sft"], 3))
fluency_se = (ev["fluency"] * (1 - ev["fluency"]) / len(ev["samples"])
              + sft["fluency"] * (1 - sft["fluency"]) / len(sft["samples"])) ** 0.5
fluency_z = (sft["fluency"] - ev["fluency"]) / fluency_se if fluency_se > 0 else 0.0  # SFT minus DPO, in standard errors of the difference
if abs(fluency_z) > 2:  # the wording follows the sign the run measured
    claim(f"and its fluency is {'below' if fluency_z > 0 else 'above'} SFT's by more than 2 standard errors of "
          f"the difference (one seed)", abs(fluency_z) > 2, dpo=round(ev["fluency"], 3), sft=round(sft["fluency"], 3),
          standard_errors=round(fluency_z, 1))
else:
    print(f"fluency: no measurable difference from SFT's (DPO {ev['fluency']:.3f}, SFT {sft['fluency']:.3f}: "
          f"{fluency_z:+.1f} standard errors of the difference, within 2; one seed)")
for i in first_per_prompt(sft["samples"])[:6]:  # one sample each of six films
    a, b = sft["samples"][i], ev["samples"][i]
    print(f"{a['prompt']}\n   SFT: {a['response']} ({a['gold']:+.1f})\n   DPO: {b['response']} ({b['gold']:+.1f})")


# %% [markdown]
# ## The implicit reward is a classifier
# DPO trained no reward model, yet $\hat r(x, y) = \beta\log\pi(y|x)/\pi_{ref}(y|x)$ (eq. 5 without its per-prompt term β·log Z(x)) ranks
# any pair. On the held-out pairs, set its accuracy beside the reward model's (lesson 05) and the
# oracle's (the gold reward's agreement with the noisy labels: the ceiling). All three count a tie
# as ½, as the reward model's and the oracle's always have; TRL's `rewards/accuracies` counts a
# tie as wrong (chosen > rejected, strictly), which is why it reads 0.0 at step 0, when every
# implicit reward is 0 (lesson 08).

# %%
dpo_policy = run.load_policy("dpo.pt")
sft_policy = run.load_policy("sft.pt")
val_pairs, _ = read_preferences(run.path("prefs_val.jsonl"))
val_enc, _ = encode_pairs(run.tok, val_pairs, dpo_policy.config.block_size)
beta = m["config"]["beta"]
# pair_logps scores any model: log π(y_w|x), log π(y_l|x) of every pair, (N, 2)
implicit = beta * (pair_logps(dpo_policy, val_enc, run.tok.end_id, cfg.average_logps)
                   - pair_logps(sft_policy, val_enc, run.tok.end_id, cfg.average_logps))
wins, ties = implicit[:, 0] > implicit[:, 1], implicit[:, 0] == implicit[:, 1]
accuracy = {"implicit reward (DPO)": (wins.float() + 0.5 * ties.float()).mean().item(),
            "reward model": read_json(run.path("reward_model_metrics.json"))["val_accuracy"],
            "oracle (gold reward)": read_json(run.path("prefs_report.json"))["val"]["oracle_accuracy"]}
for name, acc in accuracy.items():
    print(f"  {name:24s} held-out pair accuracy {acc:.3f}")
print(f"(ties: {int(ties.sum())} of {len(val_enc)}; counted as wrong, the implicit reward's accuracy is "
      f"{wins.float().mean().item():.3f}, the run's own eval/rewards/accuracies {end['eval/rewards/accuracies']:.3f})")
# the reward model's score of every held-out pair, and each classifier's verdict pair by pair
rm = load_reward_model(run.path("reward_model.pt"), run.device, run.tok.vocab_size).eval()
rm_scores = []
with torch.no_grad():
    for i in range(0, len(val_enc), 128):
        chunk = val_enc[i:i + 128]
        s_ = rm.raw(*pair_batch(chunk, run.device, run.tok.end_id)).float().cpu()
        rm_scores.append(torch.stack([s_[:len(chunk)], s_[len(chunk):]], 1))
rm_scores = torch.cat(rm_scores)
verdict = lambda sc: ((sc[:, 0] > sc[:, 1]).float() + 0.5 * (sc[:, 0] == sc[:, 1]).float())
vs_labels = paired(verdict(implicit).tolist(), verdict(rm_scores).tolist())
claim("against the labels the implicit reward and the reward model are level: no measurable difference, "
      f"paired over the {len(val_enc)} held-out pairs (one training seed)", vs_labels.verdict == "no measurable difference",
      implicit_minus_rm=vs_labels.describe().replace("seeds", "pairs"))

# %% [markdown]
# A blunt ruler, though: the labels are noisy, so even the gold reward scores only the oracle's
# accuracy against them. A sharper one: the *gold* ordering instead of the labels (the held-out
# pairs whose two responses differ in gold reward, the label ignored). The verdict of the paired
# difference is printed as it comes out:

# %%
gold_gap = torch.tensor([world.gold_reward(p["prompt"], p["chosen"]) - world.gold_reward(p["prompt"], p["rejected"])
                         for p in val_pairs])
decided = gold_gap != 0
by_gold = lambda sc: ((sc[:, 0] - sc[:, 1]) * gold_gap > 0).float()[decided]
vs_gold = paired(by_gold(implicit).tolist(), by_gold(rm_scores).tolist())
print(f"agreement with the gold ordering on {int(decided.sum())} held-out pairs: implicit reward "
      f"{by_gold(implicit).mean().item():.3f}, reward model {by_gold(rm_scores).mean().item():.3f}; "
      f"implicit − reward model = {vs_gold.describe().replace('seeds', 'pairs')}: {vs_gold.verdict}")

# %% [markdown]
# And on fresh text: samples of the SFT model on the held-out films (four a film, as lesson 05
# did for the reward model), scored by the implicit reward, by the reward model and by the gold
# reward. The implicit reward is only defined up to a constant per prompt, β·log Z(x) (eq. 5),
# so the correlation is also shown with each film's mean taken out.

# %%
prompts = [world.make_prompt(t) for t in world.split_titles()[1] for _ in range(4)]
ids = sample(sft_policy, run.tok, prompts, make_generator(run.seed + 8, run.device), dtype=run.dtype)
fresh = {"gold": torch.tensor([world.gold_reward(p, run.tok.decode_response(r)) for p, r in zip(prompts, ids)]),
         "implicit": beta * (response_logps(dpo_policy, run.tok, prompts, ids, dtype=run.dtype).logps
                             - response_logps(sft_policy, run.tok, prompts, ids, dtype=run.dtype).logps),
         "reward model": score(load_reward_model(run.path("reward_model.pt"), run.device, run.tok.vocab_size),
                               run.tok, prompts, ids, dtype=run.dtype)}


def correlation(a, b):
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def centred(x):
    """x minus the mean of its film (prompts come in runs of four)."""
    x = x.view(-1, 4)
    return (x - x.mean(1, keepdim=True)).flatten()


corr = {k: (correlation(fresh[k], fresh["gold"]), correlation(centred(fresh[k]), centred(fresh["gold"])))
        for k in ("implicit", "reward model")}
for k, (raw, within) in corr.items():
    print(f"  {k:14s} vs gold on {len(prompts)} fresh SFT samples: correlation {raw:+.2f}, within a film {within:+.2f}")
# the difference of the two correlations, with a 95 % interval: the films resampled with replacement
boot = torch.Generator().manual_seed(run.seed)
films = len(prompts) // 4
diffs = []
for _ in range(1000):
    pick = (torch.randint(0, films, (films,), generator=boot)[:, None] * 4 + torch.arange(4)).flatten()
    diffs.append(correlation(fresh["implicit"][pick], fresh["gold"][pick])
                 - correlation(fresh["reward model"][pick], fresh["gold"][pick]))
low, high = sorted(diffs)[25], sorted(diffs)[974]
print(f"  correlation of the implicit reward minus the reward model's: {corr['implicit'][0] - corr['reward model'][0]:+.3f} "
      f"(95 % bootstrap interval over the {films} films {low:+.3f} … {high:+.3f})")
claim("on fresh text the implicit reward tracks the gold reward more closely than the reward model: the interval of "
      "the difference of their correlations is above 0 (one training seed)", low > 0,
      implicit=round(corr["implicit"][0], 3), reward_model=round(corr["reward model"][0], 3))
fig = plots.implicit_reward_figure(accuracy, fresh, run.path("dpo_implicit_reward.png"))
show(fig)

# %% [markdown]
# **Why would the implicit reward track the gold reward better?** Both learned from the same pairs.
# Their forms differ: the gold reward is a sum over sentences, each scored by its one sentiment
# word; the implicit reward is a sum over the response's tokens, β·Σ_t log π(y_t|…)/π_ref(y_t|…),
# one term per token — so it can score each sentiment word where it stands. The reward model reads
# the whole response from one vector, at its last token, and must learn to add the words up inside
# that vector. Does the implicit reward really score word by word? Its per-token terms at the
# sentiment words of these fresh samples, against each word's own score in the world's lexicon:

# %%
rows_fresh = prompt_and_response_rows(run.tok, prompts, ids)
fresh_ids, fresh_mask = collate(rows_fresh, run.tok.end_id)
with torch.no_grad():
    per_token = beta * (sequence_logps(dpo_policy, fresh_ids, fresh_mask).token_logps
                        - sequence_logps(sft_policy, fresh_ids, fresh_mask).token_logps)  # (N, T-1)
lexicon = {**world.ADJECTIVES, **world.VERBS}
word_ids = {run.tok.encode(" " + w)[0]: w for w in lexicon if len(run.tok.encode(" " + w)) == 1}
targets, scored_mask = fresh_ids[:, 1:], fresh_mask[:, 1:]
at_word = scored_mask & torch.isin(targets, torch.tensor(list(word_ids)))
word_scores = torch.tensor([lexicon[word_ids[t]] for t in targets[at_word].tolist()])
word_terms = per_token[at_word]
word_corr = correlation(word_terms, word_scores)
share = (word_terms.abs().sum() / per_token[scored_mask].abs().sum()).item()
print(f"{int(at_word.sum())} sentiment words in the samples ({at_word.sum().item() / scored_mask.sum().item():.0%} of the "
      f"response tokens): correlation of their per-token implicit reward with the word's lexicon score "
      f"{word_corr:+.2f}; they carry {share:.0%} of the implicit reward's total size")
claim("the implicit reward scores sentiment words where they stand: its per-token term at a sentiment word "
      "correlates with the word's score above 0.7", word_corr > 0.7, correlation=round(word_corr, 3))

# %% [markdown]
# ## Answers
# **Will the held-out `logps/chosen` go up?** Read from the run's own held-out history, step 0
# against the last step:

# %%
print(f"held-out log π(y_w) moved {chosen_change:+.3f} nats and log π(y_l) {rejected_change:+.3f} "
      f"(from step {start['step']} to step {end['step']}); the margin moved "
      f"{chosen_change - rejected_change:+.3f}.")
print("So logps/chosen " + ("went up" if chosen_change > 0 else "went DOWN") + ".")
claim("the held-out log π(y_w) fell while the margin grew", chosen_change < 0 < chosen_change - rejected_change,
      chosen=round(chosen_change, 3), margin=round(chosen_change - rejected_change, 3))
train_pairs, _ = read_preferences(run.path("prefs_train.jsonl"))
train_enc, _ = encode_pairs(run.tok, train_pairs, dpo_policy.config.block_size)
train_ref, from_cache = cached_reference_logps(sft_policy, run.path("sft.pt"), train_enc, run.tok.end_id,
                                               cfg.average_logps, run.out, run.dtype)
train_change = (pair_logps(dpo_policy, train_enc, run.tok.end_id, cfg.average_logps) - train_ref).mean(0)
print(f"on the {len(train_enc)} training pairs (each pushed by the loss): log π(y_w) moved {train_change[0]:+.3f}, "
      f"log π(y_l) {train_change[1]:+.3f} on average (reference log-probs from the stage's cache: {from_cache})")
claim("even on the training pairs, whose chosen responses the gradient pushes up, the mean log π(y_w) fell",
      train_change[0] < 0, chosen=round(train_change[0].item(), 3), rejected=round(train_change[1].item(), 3))

# %% [markdown]
# Why? Not because nothing asks the chosen log-prob to rise: the §4 gradient (lesson 08) is
# −β·σ(r̂_l − r̂_w)·[∇log π(y_w) − ∇log π(y_l)], so in every training step each pair's term pushes its
# log π(y_w) *up*. What the loss does not do is *stop* it from falling:
# - it reads only the difference of the two log-ratios, so it is blind to any shift both share —
#   lowering both by the same amount costs nothing;
# - the parameters are shared: a step for one pair moves the probability of every response,
#   including the many no pair mentions (lesson 07's "Up to what?": what no pair mentions, the loss
#   leaves free), and the pushes of all the other pairs move this pair's responses too.
# The held-out pairs above get no push of their own at all: they move only through those shared
# parameters. The mass both log-probs lost went to other responses (lessons 16 and 21 measure
# where). The bridge lesson (lesson 12) climbs from the exact lab to the GPT one condition at a
# time; its rungs 1–2 show why.

# %% [markdown]
# ## What to remember
# - Read the held-out curves, not the training batch's: `eval/loss` falls from ln 2, margins and
#   accuracies rise; `rewards/accuracies` is 0.0 at step 0 because every pair is a tie.
# - A margin that keeps growing while the accuracy barely moves is confidence, not skill: read the
#   accuracy, the margin and the log-probs together, then the samples.
# - Each training pair's term pushes its log π(y_w) up, but only the margin is held: shared parameters
#   and the shift both log-ratios share let the chosen log-prob fall too, and the freed mass goes to
#   text no pair labelled — so report fluency beside every win rate (lessons 16 and 21 look closer).
# - The implicit reward β·log π/π_ref is a reward model you get for free, defined only up to a
#   constant per prompt; built from per-token terms, it can score each word where it stands.
