# %% [markdown]
# # 14 · Diversity against β, and the cost of RL
# **You need** lessons 06 and 09 (the REINFORCE policy, DPO's β sweep). **You will see** two of the
# critics' points in numbers. Perfectly maximising a reward collapses the policy onto the few best responses. β is the leash:
# we sweep it for both methods and watch the gold reward, the per-token entropy and the fraction of
# unique responses. Then the bill: wall time, tokens through the model, samples generated and the
# models held in memory, for the RLHF roads against the DPO road.
# Run: `python tutorials/14_diversity_and_cost.py` in the folder of lessons 01–11 (`runs/tutorial`;
# `--fast`: a smoke run). By default: the two measures by hand on a handful of samples, a
# lecture-sized β sweep (two β per method), and the cost rows of the roads those lessons trained (DPO,
# REINFORCE). The full sweep and the cost table with PPO and GRPO (which must train first) are shown
# when saved here or in `runs/default`, and run with `--set full_study=true`.

# %%
import torch
import torch.nn.functional as F

from minidpo import world
from minidpo.checkpoint import load_checkpoint, read_json
from minidpo.data import collate, prompt_and_response_rows
from minidpo.dpo import DPOConfig
from minidpo.evaluate import response_logps, text_stats
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import lesson_knobs, saved_study, show, tutorial_run
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.rlhf import RLHFConfig
from minidpo.sampling import make_generator, sample
from minidpo.studies import cost, diversity

run = tutorial_run("14: diversity vs β and the cost of RL")
ensure(run, "eval_sft", "rlhf", "dpo", "eval_rlhf", "eval_dpo")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# The knobs: the sampling temperature of the hand-made samples, and whether to run the full studies.

# %%
knobs = lesson_knobs(temperature=1.0, full_study=False)

# %% [markdown]
# ## The two measures, by hand
# A handful of samples of one held-out prompt from the SFT model and from the RLHF policy (lesson 06).
# **Per-token entropy**: at each response position t, the entropy of the next-token distribution
# the sample was drawn from, $H_t = -\sum_v \pi(v|x, y_{<t})\log\pi(v|x, y_{<t})$, averaged over
# every response position of the samples. **Unique fraction**: distinct responses / samples
# (distinct-2, the usual bigram measure, says little in a vocabulary this small).

# %%
K = 8
prompt = world.make_prompt(world.split_titles()[1][0])
hand = {}
for name, file in (("SFT", "sft.pt"), ("RLHF", "rlhf.pt")):
    policy = run.load_policy(file)
    ids = sample(policy, run.tok, [prompt] * K, make_generator(run.seed, run.device),
                 temperature=knobs.temperature, dtype=run.dtype)
    texts = [run.tok.decode_response(r) for r in ids]
    x, mask = collate(prompt_and_response_rows(run.tok, [prompt] * K, ids), run.tok.end_id, run.device)
    with torch.no_grad():
        logp = F.log_softmax(policy(x[:, :-1]).float() / knobs.temperature, -1)  # (K, T-1, V)
    H = -(logp.exp() * logp).sum(-1)              # (K, T-1): entropy at each position
    at = mask[:, 1:]                              # response positions (token t is predicted at t-1)
    entropy, unique = H[at].mean().item(), len(set(texts)) / K
    library = response_logps(policy, run.tok, [prompt] * K, ids, dtype=run.dtype).entropy  # of π itself (T = 1)
    hand[name] = {"entropy": entropy, "unique": unique, "library_entropy": library,
                  "library_unique": text_stats([prompt] * K, texts)["unique_frac"]}
    print(f"{name}: {K} samples of {prompt} ->")
    for t in texts[:3]:
        print(f"    {t}")
    print(f"  entropy at the first sample's response positions: {H[0][at[0]]}")
    print(f"  entropy {entropy:.3f} nats/token (library, T = 1: {library:.3f}); unique {len(set(texts))}/{K} = {unique:.3f} "
          f"(library: {hand[name]['library_unique']:.3f})")

# %% [markdown]
# ## What β buys
# The maximiser of the KL-regularised objective, π* ∝ π_ref·exp(r/β), keeps π_ref's spread at large
# β and collapses onto the best responses as β → 0. The library evaluates each policy on the
# held-out films: DPO at the study's β grid (lesson 09's sweep trained them), REINFORCE at β = 0 and
# at lesson 06's β (the pipeline's own policies are reused; the others train once, into `sweeps/`,
# shared with lesson 15 and the full study). The smallest β of each sweep is not comparable: RL's is
# β = 0, no leash at all, while DPO's loss needs a finite β (its smallest here is 0.1). So compare
# the methods by what each pays for the distance it travels: the entropy lost from the SFT model's,
# per nat of KL to the reference, (H_SFT − H)/KL, at every β.
# *Predict*: which method pays more entropy per nat of KL?

# %%
study_betas = diversity.FAST_DIVERSITY_BETAS if run.fast else diversity.DIVERSITY_BETAS
betas = {"dpo": tuple(sorted({*study_betas["dpo"], DPOConfig().beta})),  # lesson 09 trained these
         "rlhf": (min(study_betas["rlhf"]), RLHFConfig().beta)}           # β = 0 and lesson 06's policy
points = diversity.diversity_points(run, betas)
sft = read_json(run.path("eval_sft.json"))
print(f"SFT: gold {sft['gold_reward']:+.3f}, entropy {sft['entropy']:.3f}, unique {sft['unique_frac']:.3f}")
per_nat = {}
for method in ("rlhf", "dpo"):
    for q in sorted((q for q in points if q["method"] == method), key=lambda q: -q["beta"]):
        cost_per_nat = (sft["entropy"] - q["entropy"]) / q["kl_to_ref"]
        per_nat.setdefault(method, []).append(cost_per_nat)
        print(f"{method.upper():4s} β = {q['beta']:<4g}: KL {q['kl_to_ref']:5.2f}, entropy {q['entropy']:.3f}, unique "
              f"{q['unique_frac']:.3f}, gold {q['gold_reward']:+.3f}; entropy lost per nat of KL {cost_per_nat:+.3f}"
              + ("   (β = 0: no leash)" if q["beta"] == 0 else ""))
per_nat = {m: sum(v) / len(v) for m, v in per_nat.items()}
fig = plots.diversity_figure(points, run.path("diversity_lesson.png"))
print("figure:", run.path("diversity_lesson.png"))
show(fig)

# %% [markdown]
# ## The bill, one row by hand
# DPO's road: the reference scores every training and held-out pair once (forward only), then
# each epoch runs every training pair forward and backward; it holds one model while it trains.
# REINFORCE's road: the reward model's training, then at every step samples generated token by
# token, scored by the policy, the reference and the reward model, and an update.

# %%
cfg = run.settings(DPOConfig)
block = run.load_policy("sft.pt").config.block_size
lengths = lambda file: [len(c[0]) + len(r[0]) for c, r in encode_pairs(run.tok, read_preferences(run.path(file))[0], block)[0]]
train_tokens, val_tokens = sum(lengths("prefs_train.jsonl")), sum(lengths("prefs_val.jsonl"))
params = sum(v.numel() for k, v in load_checkpoint(run.path("sft.pt"))[0].items() if k != "lm_head.weight")
dpo_row = {"wall_s": run.record("dpo")["seconds"], "gold_reward": read_json(run.path("eval_dpo.json"))["gold_reward"],
           "models": ["policy"], "params": params,
           "tokens_forward": train_tokens + val_tokens + cfg.epochs * train_tokens,  # reference pass + training
           "tokens_backward": cfg.epochs * train_tokens, "samples_generated": 0}
print(f"DPO by hand: reference pass {train_tokens} + {val_tokens} tokens, training {cfg.epochs} × {train_tokens}; "
      f"{params / 1e6:.2f} M parameters (tied head counted once); wall {dpo_row['wall_s']:.1f} s (its provenance record)")
rl_cfg = run.settings(RLHFConfig)
rl_m, rm_m = read_json(run.path("rlhf_metrics.json")), read_json(run.path("reward_model_metrics.json"))
rl_samples = rl_cfg.steps * rl_cfg.prompts_per_step * rl_cfg.k
print(f"REINFORCE by hand: {rl_cfg.steps} steps × {rl_cfg.prompts_per_step} prompts × {rl_cfg.k} samples = {rl_samples} "
      f"samples, + {rm_m['samples_generated']} for the reward model's normalisation and check; wall "
      f"{run.record('reward_model')['seconds']:.1f} s (reward model) + {run.record('rlhf')['seconds']:.1f} s (REINFORCE)")

# %% [markdown]
# The library's rows of the same roads (`cost.road_rows`): the DPO row should be the one just
# computed; an RL road that reaches DPO's gold reward adds a row cut at that step.

# %%
rows = cost.road_rows(run, ["dpo", "rlhf (REINFORCE)"])
cost.print_cost(rows)
same = {k: (dpo_row[k], rows["dpo"][k]) for k in dpo_row}
print("DPO row by hand = the library's:", all(a == b for a, b in same.values()),
      f"| REINFORCE samples by hand = the library's: {rl_samples + rm_m['samples_generated'] == rows['rlhf (REINFORCE)']['samples_generated']}")

# %% [markdown]
# ## The full studies
# The study's whole β grid for diversity, and the cost table with PPO (which also holds a value
# model in memory) and GRPO.

# %%
if knobs.full_study:
    full_points, full_rows = diversity.run_diversity(run), cost.cost_table(run)
    shown = f"the full studies, run in {run.out}"
else:
    found_div, found_cost = saved_study(run, "diversity/diversity.json"), saved_study(run, "cost.json")
    full_points = read_json(found_div)["points"] if found_div else None
    full_rows = read_json(found_cost) if found_cost else None
    shown = ", ".join(f"{what} saved in {f.parent}" for what, f in (("diversity", found_div), ("cost", found_cost)) if f)
if full_points is None and full_rows is None:
    print(f"No saved full studies here or in runs/default: `--set full_study=true`, or `{run.command('diversity')}` "
          f"and `{run.command('cost')}`.")
else:
    print("Shown:", shown)
    if full_points:
        for p in full_points:
            print(f"  {p['method']} β={p['beta']}: gold {p['gold_reward']:+.3f}, entropy {p['entropy']:.3f}, "
                  f"unique {p['unique_frac']:.3f}, KL {p['kl_to_ref']:.2f}")
        show(plots.diversity_figure(full_points))
    if full_rows:
        cost.print_cost(full_rows)

# %% [markdown]
# *Try*: `--set temperature=0.5` (or set `temperature` in the knobs cell and re-run from there): the
# hand-made samples come from a sharper distribution, and its entropy falls for both policies. Does
# the fraction of unique responses follow?
#
# *Questions*
# 1. Which method pays more entropy per nat of KL it moves from the reference?
# 2. How many times more tokens does the REINFORCE road push through the model than the DPO road,
#    and what does it spend them on?

# %% [markdown]
# ## Answers

# %%
worse = max(per_nat, key=per_nat.get)
print("1. entropy lost per nat of KL, mean over each sweep's β: " + ", ".join(
    f"{m.upper()} {d:+.3f}" for m, d in per_nat.items()) + f" -> {worse.upper()} pays more")
rl_row = rows["rlhf (REINFORCE)"]
print(f"2. {rl_row['tokens_forward'] / rows['dpo']['tokens_forward']:.1f}× the forward tokens "
      f"({rl_row['tokens_forward']:.0f} vs {rows['dpo']['tokens_forward']:.0f}): of REINFORCE's, "
      f"{rl_m['tokens_generated']} are generated one token at a time, and every sample is scored by the "
      f"policy, the reference and the reward model; DPO runs the reference once, before training.")

# %% [markdown]
# ## What to remember
# - β is the leash: as it shrinks, the policy moves further from the reference and its entropy and
#   the variety of its responses fall; with no leash at all (RL at β = 0) they collapse.
# - Compare methods at equal cost (per nat of KL, or at a matched KL as lesson 12 does), never at
#   settings that decide the answer.
# - The RL roads cost more: sampling token by token, three or four models held, and a reward model
#   to train first; DPO runs its reference once.
