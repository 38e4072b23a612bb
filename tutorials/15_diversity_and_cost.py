# %% [markdown]
# # 15 · Diversity against β, and the cost of RL
# **You need** lessons 06 and 09 (the REINFORCE policy, DPO's β sweep). **You will see** two of the
# critics' points in numbers. The maximiser of the KL-regularised objective, π* ∝ π_ref·exp(r/β),
# keeps π_ref's spread at large β and concentrates on the best responses *of the reward it is
# given* as β → 0. β is the leash: we sweep it for both methods and watch the gold reward, the
# per-token entropy and the fraction of unique responses. Then the bill: wall time, tokens through
# the model, samples generated and the models held in memory, for the RLHF roads against DPO's.
# Run: `python tutorials/15_diversity_and_cost.py` in the folder of lessons 01–11 (`runs/tutorial`;
# `--fast`: a smoke run). By default: the two measures by hand on a handful of samples, a
# lecture-sized β sweep (one seed), and the cost rows of the roads those lessons trained (DPO,
# REINFORCE). The full sweep (three seeds, each evaluated along training) and the cost table with
# PPO and GRPO are read from this folder, `runs/default`, or the copies committed with minidpo, and
# run with `--set full_study=true`.

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
from minidpo.harness.tutorial import claim, claim_paired, lesson_knobs, show, study_result, tutorial_run
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.rlhf import RLHFConfig
from minidpo.sampling import make_generator, sample
from minidpo.studies import cost, diversity

run = tutorial_run("15: diversity vs β and the cost of RL")
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
if knobs.temperature == 1.0:
    claim("at temperature 1 the measures by hand are the library's",
          all(abs(h["entropy"] - h["library_entropy"]) < 1e-4 and h["unique"] == h["library_unique"] for h in hand.values()),
          largest_gap=max(abs(h["entropy"] - h["library_entropy"]) for h in hand.values()))

# %% [markdown]
# ## What β buys, on one seed
# The library evaluates each policy on the held-out films: DPO at the study's β grid (lesson 09's
# sweep trained them), REINFORCE at β = 0 and at lesson 06's β (the pipeline's own policies are
# reused; the others train once, into `sweeps/`, shared with the failure-modes lesson). The smallest β of each
# sweep is not comparable: RL's is β = 0, no leash at all, while DPO's loss needs a finite β (its
# smallest here is 0.1). *Predict*: which policy moves furthest from the reference, and what
# happens to its gold reward?

# %%
study_betas = diversity.FAST_DIVERSITY_BETAS if run.fast else diversity.DIVERSITY_BETAS
betas = {"dpo": tuple(sorted({*study_betas["dpo"], DPOConfig().beta})),  # lesson 09 trained these
         "rlhf": (min(study_betas["rlhf"]), RLHFConfig().beta)}           # β = 0 and lesson 06's policy
points = diversity.diversity_points(run, betas)
sft = read_json(run.path("eval_sft.json"))
print(f"SFT: gold {sft['gold_reward']:+.3f}, entropy {sft['entropy']:.3f}, unique {sft['unique_frac']:.3f}")
print("one seed, each policy at the end of its training (each at its own KL):")
for q in sorted(points, key=lambda q: (q["method"], -q["beta"])):
    print(f"  {q['method'].upper():4s} β = {q['beta']:<4g}: KL {q['kl_to_ref']:5.2f}, entropy {q['entropy']:.3f}, unique "
          f"{q['unique_frac']:.3f}, gold {q['gold_reward']:+.3f}" + ("   (β = 0: no leash)" if q["beta"] == 0 else ""))
free = next(q for q in points if q["method"] == "rlhf" and q["beta"] == 0)
claim("β = 0 RL moves furthest from the reference of the policies here", all(free["kl_to_ref"] > q["kl_to_ref"] for q in points if q is not free),
      kl=free["kl_to_ref"], next_largest=max(q["kl_to_ref"] for q in points if q is not free))
lowest = all(free["entropy"] < q["entropy"] for q in points if q is not free)
print(f"  its per-token entropy {free['entropy']:.3f} is " + ("the lowest here" if lowest else
      "not the lowest here: broken text can be more random per token, not less") + " (one seed: a reading, not a finding)")
lesson_table = {m: {str(q["beta"]): {k: {"mean": q[k], "std": 0.0} for k in ("gold_reward", "entropy", "unique_frac")}
                    for q in points if q["method"] == m} for m in betas}
fig = plots.diversity_figure(lesson_table, run.path("diversity_lesson.png"))
print("figure:", run.path("diversity_lesson.png"))
show(fig)

# %% [markdown]
# ## The full sweep, on three seeds
# Every method and β trained on three seeds (each its own pairs and reward model) and evaluated
# at four points along training. The table is the end of training, mean ± standard deviation over
# the seeds. The readings pair the seeds: within a method, its smallest β against its largest; and
# DPO against REINFORCE at the same KL.

# %%
div, shown = study_result(run, knobs.full_study, "diversity/diversity.json", lambda: diversity.run_diversity(run))
if div is None:
    raise SystemExit(f"error: no saved diversity study: `--set full_study=true`, or `{run.command('diversity')}`")
print("Shown:", shown)
diversity.print_table(div)
show(plots.diversity_figure(div["table"]))
n_seeds, free_row, s0 = len(div["seeds"]), div["table"]["rlhf"]["0.0"], div["sft"]
claim_paired("gold reward at the end", "β = 0 RL", free_row["gold_reward"]["values"], "the SFT model",
             [s0["gold_reward"]] * n_seeds, "=")
claim_paired("the reward model's score of the training samples (the proxy, 0 on SFT's samples by its normalisation)",
             "β = 0 RL", free_row["train_proxy"]["values"], "SFT's samples", [0.0] * n_seeds, ">")
claim_paired("per-token entropy", "β = 0 RL", free_row["entropy"]["values"], "the SFT model", [s0["entropy"]] * n_seeds, "=")
claim("β = 0 RL's responses stay varied: at least 4 in 5 differ in every seed, so it has not collapsed onto a "
      "few best responses; the proxy rose measurably while the gold did not (text the proxy overrates)",
      min(free_row["unique_frac"]["values"]) >= 0.8, lowest=min(free_row["unique_frac"]["values"]))
tr = div["trends"]
small, large = tr["dpo"]["small_beta"], tr["dpo"]["large_beta"]
claim_paired("DPO's unique fraction", f"β = {small}", div["table"]["dpo"][str(small)]["unique_frac"]["values"],
             f"β = {large}", div["table"]["dpo"][str(large)]["unique_frac"]["values"], "=")
claim_paired("DPO's per-token entropy", f"β = {small}", div["table"]["dpo"][str(small)]["entropy"]["values"],
             f"β = {large}", div["table"]["dpo"][str(large)]["entropy"]["values"], "=")

# %% [markdown]
# **At the same KL.** The ends of the two sweeps sit at different KL, so they cannot say which
# method pays more entropy for the distance it travels. Each method at its default β (DPO 0.5,
# REINFORCE 0.05) is read along its training where it passes the largest KL both runs reach in that
# seed (linear between the two evaluations around it).

# %%
mt = div["matched"]
print("KL read at, per seed: " + ", ".join(f"{k:.2f}" for k in mt["kl"]))
for k in ("entropy", "unique_frac", "gold_reward"):
    print(f"  {k}: DPO " + ", ".join(f"{v:.3f}" for v in mt[k]["dpo"]) + " | REINFORCE " + ", ".join(f"{v:.3f}" for v in mt[k]["rlhf"]))
entropy_at_kl = claim_paired("per-token entropy at the same KL", "DPO", mt["entropy"]["dpo"], "REINFORCE", mt["entropy"]["rlhf"], "=")
claim_paired("unique fraction at the same KL", "DPO", mt["unique_frac"]["dpo"], "REINFORCE", mt["unique_frac"]["rlhf"], "=")

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
# computed. One run each: the token and sample counts follow from the settings, the wall times are
# one measurement on this machine.

# %%
rows = cost.road_rows(run, ["dpo", "rlhf (REINFORCE)"])
cost.print_cost(rows)
claim("the DPO row by hand is the library's", all(dpo_row[k] == rows["dpo"][k] for k in dpo_row))
claim("and so is REINFORCE's sample count", rl_samples + rm_m["samples_generated"] == rows["rlhf (REINFORCE)"]["samples_generated"],
      samples=rl_samples + rm_m["samples_generated"])

# %% [markdown]
# ## Two more roads: PPO's value model, GRPO's groups
# The full cost table adds two RL algorithms; the PPO lesson teaches PPO in the open.
# **PPO** keeps a fourth model, a **value model** V_φ (a GPT backbone with a scalar head, like the
# reward model) that predicts, at every response token t (state s_t: the prompt and the tokens so
# far), the return still to come. With it the one reward per response becomes an advantage per
# token, by generalised advantage estimation (r_t: the reward model's score on the last token, minus
# β times the token's log-ratio to the reference):
# $$\delta_t = r_t + \gamma V_\phi(s_{t+1}) - V_\phi(s_t), \qquad A_t = \sum_{l \ge 0} (\gamma\lambda)^l\, \delta_{t+l},$$
# and V_φ is trained by regression on the returns R_t = A_t + V_φ(s_t) (the values at sampling time,
# held fixed): loss (V_φ(s_t) − R_t)². PPO then updates the policy several times per batch with a
# clipped probability ratio. **GRPO** drops the value model: its baseline
# is the group of K samples of the same prompt, $A_i = (r_i - \text{mean}_j r_j)/\text{std}_j r_j$ —
# the group-normalised advantages of the REINFORCE lesson (06), in the place of leave-one-out. So PPO
# holds four models while it trains, GRPO and REINFORCE three, DPO one.

# %%
cost_rows, shown_cost = study_result(run, knobs.full_study, "cost.json", lambda: cost.cost_table(run), "the cost table")
if cost_rows is None:
    raise SystemExit(f"error: no saved cost table: `--set full_study=true`, or `{run.command('cost')}`")
print("Shown:", shown_cost, "(one run)")
cost.print_cost(cost_rows)
claim("the PPO road holds the most models and parameters while it trains",
      all(len(cost_rows["ppo"]["models"]) > len(r["models"]) for k, r in cost_rows.items() if not k.startswith("ppo")),
      ppo_models=len(cost_rows["ppo"]["models"]))

# %% [markdown]
# *Try*: `--set temperature=0.5` (or set `temperature` in the knobs cell and re-run from there): the
# hand-made samples come from a sharper distribution, and its entropy falls for both policies. Does
# the fraction of unique responses follow?
#
# *Questions*
# 1. At the same KL, which method keeps more per-token entropy, DPO or REINFORCE?
# 2. How many times more tokens does the REINFORCE road push through the model than the DPO road,
#    and what does it spend them on?

# %% [markdown]
# ## Answers

# %%
print(f"1. at the largest KL both reach (per seed {', '.join(f'{k:.2f}' for k in mt['kl'])}): DPO − REINFORCE "
      f"entropy {entropy_at_kl.describe(' nats/token')}: {entropy_at_kl.verdict}.")
rl_row = rows["rlhf (REINFORCE)"]
ratio = rl_row["tokens_forward"] / rows["dpo"]["tokens_forward"]
claim(f"2. the REINFORCE road pushes {ratio:.1f}× DPO's forward tokens (one run)", ratio > 1,
      reinforce=rl_row["tokens_forward"], dpo=rows["dpo"]["tokens_forward"])
print(f"   of REINFORCE's, {rl_m['tokens_generated']} are generated one token at a time, and every sample is scored by "
      "the policy, the reference and the reward model; DPO runs the reference once, before training.")

# %% [markdown]
# ## What to remember
# - β is the leash: without it (RL at β = 0) the policy runs far from the reference, and what it
#   finds is text the proxy overrates, not a handful of best responses (the claims above say how
#   much of that three seeds can measure).
# - Read diversity at the same KL, as the frontier lesson reads reward: the ends of two sweeps sit at
#   different distances from the reference.
# - The RL roads cost more: sampling token by token, three or four models held, and a reward model
#   to train first; DPO runs its reference once.
