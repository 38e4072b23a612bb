# %% [markdown]
# # 18 · PPO next to REINFORCE
# **You need** the RLHF lesson (REINFORCE with a KL penalty) and the Figure 2 lesson (methods read at
# the same KL). **You will see** what PPO adds to REINFORCE, and what it buys on equal terms.
# InstructGPT did RLHF with PPO, not with the REINFORCE of the RLHF lesson. Both start from the same
# rollouts: prompts, K samples each from the current policy, a reward for each sample, and the
# log-ratio to the reference. What PPO adds is (1) a **value model** V(s_t) that predicts, at every
# token, the reward still to come, so credit is given per token instead of per sequence; and (2) a
# **clipped importance ratio**, so one batch of samples can be used for several gradient steps
# without the policy running away from the one that sampled them.
#
# This lesson runs one PPO step in the open on one batch, tensor by tensor, then trains PPO and
# REINFORCE from the same SFT model on the same budget of samples and compares the two the way the
# Figure 2 lesson compares methods: at the same KL to the reference, paired by seed over 3 seeds
# (this run trains one seed; the 3-seed study is read from where it ran, or from the copy committed
# with minidpo). Run: `python tutorials/18_ppo_vs_reinforce.py` (about a minute and a half; `--fast` for
# a smoke run); the lesson prints how long it took.

# %%
import time

import torch

from minidpo.checkpoint import read_json
from minidpo.harness import compare as C
from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import claim, claim_paired, lesson_knobs, saved_study, show, tutorial_run, where_from
from minidpo.model import sequence_logps
from minidpo.ppo import PPOConfig, ValueModel, clipped_policy_loss, clipped_value_loss, gae, token_rewards, whiten
from minidpo.rollouts import RLLoop
from minidpo.studies import frontier as F
from minidpo.studies import ppo_vs_reinforce

started = time.perf_counter()
run = tutorial_run("18: PPO next to REINFORCE")
ensure(run, "eval_sft", "reward_model")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# The knob of this lesson's *Try* (step 4): λ of GAE, for the step in the open (the full PPO run
# below keeps its own).

# %%
knobs = lesson_knobs(lam=run.settings(PPOConfig).lam)

# %% [markdown]
# ## Step 1–2: one batch of rollouts, scored once
# `RLLoop` is shared by REINFORCE, PPO and GRPO: it samples `prompts_per_step × k` responses at
# temperature 1 and scores them with the reward model and the frozen reference. PPO then also
# records, without gradient, the sampling policy's log-probs **log π_old(y_t)** and the value model's
# **V(s_t)** (a GPT backbone with a zero-initialised scalar head: every value starts at 0).

# %%
cfg = run.settings(PPOConfig, prompts_per_step=2, k=2)
loop = RLLoop("ppo", cfg, run.tok, run.path("sft.pt"), run.path("reward_model.pt"), run.out / "lesson17",
              run.device, run.dtype, quiet=True)
value = ValueModel(run.load_policy("sft.pt").train())
batch = loop.rollout(step=1)
mask = batch.mask.float()
with torch.no_grad():
    old = sequence_logps(loop.policy, batch.rows_ids, batch.rows_mask)
    old_values = value(batch.rows_ids) * mask
for text, r, g in zip(batch.texts, batch.reward, batch.gold):
    print(f"reward model {r:+.2f} | gold {g:+.1f} | {text}")
print("response tokens per sample:", batch.mask.sum(1).tolist())

# %% [markdown]
# ## Step 3: per-token rewards
# $$r_t = -\beta\,\big(\log\pi_{old}(y_t) - \log\pi_{ref}(y_t)\big) \;+\; [t = T]\; r_\phi(x, y)$$
# The KL penalty is paid token by token; the reward model's score arrives at the last token only.
# At step 1 the policy *is* the reference, so every KL term is 0. Summed over a response, $r_t$ is
# exactly REINFORCE's return $r_\phi(x,y) - \beta\sum_t \log\pi/\pi_{ref}$ (a test checks this).

# %%
rewards = token_rewards(batch.reward, old.token_logps, batch.ref_token_logps, mask, cfg.beta)
print("row 0 per-token rewards (response positions only):", rewards[0][batch.mask[0]])
reinforce_return = batch.reward - cfg.beta * ((old.token_logps - batch.ref_token_logps) * mask).sum(1)
print("sum of each row:", rewards.sum(1), " vs reward − β·k1:", reinforce_return)
claim("each row's per-token rewards sum to REINFORCE's return r − β·k1",
      torch.allclose(rewards.sum(1), reinforce_return, atol=1e-5),
      largest_gap=(rewards.sum(1) - reinforce_return).abs().max().item())

# %% [markdown]
# ## Step 4: GAE — advantages per token
# $$\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t), \qquad A_t = \delta_t + \gamma\lambda A_{t+1}$$
# with γ = 1, λ = 0.95 and V = 0 after the last token. The value targets are $R_t = A_t + V(s_t)$.
# With every V(s_t) = 0 (the zero head), $A_t$ is a λ-discounted sum of the rewards still to come:
# the last tokens see the reward model's score almost undiscounted. Then the advantages are
# **whitened** over the batch's tokens (mean 0, std 1).
#
# The cell prints how far $A_t$ is from the two extremes: the plain reward-to-go
# $\sum_{t' \ge t} r_{t'}$ (λ = 1: the Monte-Carlo reward-to-go; the RLHF lesson's
# REINFORCE instead credits every token with the whole return R) and the token's own reward
# $r_t$ (λ = 0: one-step TD; with V = 0 that is all a token gets).
#
# *Try*: `--set lam=1.0` (or set `lam` in the knobs cell and re-run from there): the distance to
# the reward-to-go drops to 0 — $A_t$ is the plain reward-to-go.
#
# *Try*: `--set lam=0.0`: the distance to $r_t$ drops to 0 — each token is credited only with its
# own step (the reward model's score reaches the last token alone).

# %%
advantages, returns = gae(rewards, old_values, mask, cfg.gamma, knobs.lam)
print(f"row 0 advantages (λ = {knobs.lam}):", advantages[0][batch.mask[0]])
to_go = rewards.flip(1).cumsum(1).flip(1) * mask  # Σ_{t' ≥ t} r_t' (γ = 1), 0 outside the response
from_to_go, from_own = (advantages - to_go).abs().max().item(), (advantages - rewards).abs().max().item()
print(f"max |A_t − reward-to-go| = {from_to_go:.2e}; max |A_t − r_t| = {from_own:.2e}")
white = whiten(advantages, mask)
print(f"whitened: mean {white[batch.mask].mean():+.2e}, std {white[batch.mask].std():.3f}")
claim(f"with λ = {knobs.lam:g}, A_t is " + {1.0: "the plain reward-to-go", 0.0: "each token's own reward"}.get(
      knobs.lam, "neither the plain reward-to-go nor each token's own reward"),
      {1.0: from_to_go < 1e-6, 0.0: from_own < 1e-6}.get(knobs.lam, min(from_to_go, from_own) > 1e-3),
      from_reward_to_go=from_to_go, from_own_reward=from_own)

# %% [markdown]
# ## Step 5: the clipped surrogate and the clipped value loss
# $$L^{clip} = \mathbb{E}_t\big[\max(-A_t\rho_t,\; -A_t\,\mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon))\big],
# \qquad \rho_t = \pi_\theta(y_t)/\pi_{old}(y_t)$$
# On the first minibatch π_θ = π_old, so ρ = 1 and the loss is the plain policy gradient −mean(A):
# the clip only matters from the second minibatch on, once the policy has moved. The **clip
# fraction** PPO logs is the share of response tokens where the clipped term is the larger loss:
# ρ has left [1 − ε, 1 + ε] on the side the advantage pushes towards (ρ > 1 + ε with A > 0, or
# ρ < 1 − ε with A < 0), so that token's gradient is cut. A ratio outside the range on the other
# side is not clipped: the max keeps the unclipped term, and its gradient pulls the ratio back.

# %%
new = sequence_logps(loop.policy, batch.rows_ids, batch.rows_mask)
pg_loss, clip_frac = clipped_policy_loss(new.token_logps, old.token_logps, white, mask, cfg.clip)
vf_loss = clipped_value_loss(value(batch.rows_ids), old_values, returns, mask, cfg.clip_value)
minus_mean_a = -(white * mask).sum().item() / mask.sum().item()
print(f"policy loss {pg_loss.item():+.4f} (−mean A over tokens = {minus_mean_a:+.4f}), "
      f"clip fraction {clip_frac.item():.2f}, value loss {vf_loss.item():.4f}")
claim("on the first minibatch the clipped loss is the plain policy gradient −mean(A) and nothing is clipped",
      abs(pg_loss.item() - minus_mean_a) < 1e-6 and clip_frac.item() == 0, loss=pg_loss.item())

# %% [markdown]
# One deliberately large update (plain SGD at 500 times PPO's learning rate, so that the ratios move
# far in one step), then the same batch again: the clip fraction by hand, next to the share of
# tokens whose ratio merely left the range.

# %%
optimizer = torch.optim.SGD(loop.policy.parameters(), lr=500 * cfg.lr)
optimizer.zero_grad()
pg_loss.backward()
optimizer.step()
with torch.no_grad():
    moved = sequence_logps(loop.policy, batch.rows_ids, batch.rows_mask)
ratio = torch.exp(moved.token_logps - old.token_logps)
at = batch.mask                                           # response tokens
cut = ((ratio > 1 + cfg.clip) & (white > 0)) | ((ratio < 1 - cfg.clip) & (white < 0))
outside = (ratio > 1 + cfg.clip) | (ratio < 1 - cfg.clip)
clip_by_hand, outside_frac = cut[at].float().mean().item(), outside[at].float().mean().item()
_, clip_library = clipped_policy_loss(moved.token_logps, old.token_logps, white, mask, cfg.clip)
print(f"after the update: ratios from {ratio[at].min():.3f} to {ratio[at].max():.3f}; clip fraction by hand "
      f"{clip_by_hand:.3f}, the library's {clip_library.item():.3f}; ratio outside [1 − ε, 1 + ε]: {outside_frac:.3f}")
claim("the clip fraction by hand is the library's, and it is below the share of ratios outside [1 − ε, 1 + ε]: "
      "a ratio outside on the other side is not clipped", abs(clip_by_hand - clip_library.item()) < 1e-6
      and clip_by_hand < outside_frac, clipped=clip_by_hand, outside=outside_frac)

# %% [markdown]
# ## Training, next to REINFORCE
# Now both algorithms train from the same SFT model against the same reward model, β = 0.05 each,
# on the same budget of samples: the same number of steps, each drawing the same number of samples.
# PPO makes `epochs × minibatches` updates per batch of samples; REINFORCE one. Each keeps the rest
# of the pipeline's settings (PPO's learning rate is a third of REINFORCE's, as PPO's several
# passes need): this compares the two algorithms as this project configures them, at one β, not
# each at its best. These are the units
# of `studies/ppo_vs_reinforce.py` for this run's seed, trained once into `frontier/units/` and
# evaluated on the held-out films at 1/8, 1/4 and 1/2 of training and at the end (the pipeline's
# own, longer PPO run is `python -m minidpo ppo`). Watch three PPO diagnostics:
# - **clip fraction**: the share of tokens whose gradient the clip cut (above) — a few percent
#   means the learning rate leaves room for several updates per batch;
# - **approx KL** between the sampling policy and the updated one — how far one batch moved it;
# - **value explained variance** 1 − Var(R − V)/Var(R) — how much of the return the value model
#   predicts (it starts at 0 and should rise).
#
# *Predict before running*: which reaches a higher gold reward per sample drawn? Which per minute of
# training? And which question does "per sample" really ask, when one algorithm travels further
# from the reference on the same samples?

# %%
points = ppo_vs_reinforce.train(run, [run.seed])
names = {"REINFORCE": ppo_vs_reinforce.B, "PPO": ppo_vs_reinforce.A}
reinforce, ppo = (ppo_vs_reinforce.unit_metrics(run, names[n], run.seed) for n in ("REINFORCE", "PPO"))
for name, m in (("REINFORCE", reinforce), ("PPO", ppo)):
    print(f"{name:9s}: {m['steps']} steps, {m['samples_generated']} samples, {m['seconds']:.0f}s "
          f"(sampling {m['time_split']['sampling']:.0f}s, scoring {m['time_split']['scoring']:.0f}s, "
          f"update {m['time_split']['update']:.0f}s), {m['tokens_backward']:,} tokens through backward passes")
h = ppo["history"]
for r in h[:: max(1, len(h) // 6)] + [h[-1]]:
    print(f"PPO step {r['step']:3d} | gold {r['gold_reward']:+.3f} | KL {r['kl_k1']:.2f} | clip frac {r['clip_frac']:.3f} "
          f"| approx KL {r['approx_kl']:.4f} | value EV {r['value_ev']:+.2f}")
show(plots.ppo_figure(ppo["history"], reinforce["history"], run.path("ppo_vs_reinforce.png")))
print("figure:", run.path("ppo_vs_reinforce.png"))

# %% [markdown]
# ## On the held-out films, at the same KL
# The same evaluation as every other method, at each checkpoint: samples of every held-out film at
# temperature 1, **gold** (mean gold reward of those samples), **KL** to the reference (mean over
# the samples of Σ_t log π/π_ref, nats per response), fluency (the share of grammatical samples).
# Four evaluated points per run (and the SFT point) make a coarse frontier: between two points it is
# the chord, which a run evaluated more often could only raise.
# The two algorithms end at different KL, so their end points cannot be compared: one bought its
# gold with more distance from the reference. As in the Figure 2 lesson, each run's **frontier** is the upper
# concave hull of its points and the SFT point (a mixture of two policies reaches every point of the
# chord between them), and the two are read at the same KL.

# %%
sft_eval = P.stage_eval_sft(run)
print(f"{run.eval_config()['samples_per_film']} samples per held-out film; SFT gold {sft_eval['gold_reward']:+.3f}")
for name, method in names.items():
    for p in F.points_of(points, method, "bt", run.seed):
        print(f"{name:9s} step {p['step']:3d} ({p['samples']:5d} samples): gold {p['gold_reward']:+.3f}, "
              f"KL {p['kl_to_ref']:.2f}, fluency {p['fluency']:.3f}, win rate vs SFT {p['win_rate_vs_sft']:.3f}")
hulls = {name: F.hull(F.points_of(points, method, "bt", run.seed), sft_eval) for name, method in names.items()}
reach = {name: max(v[0] for v in hull) for name, hull in hulls.items()}
print(f"KL reached on the same {ppo['samples_generated']} samples: PPO {reach['PPO']:.2f}, REINFORCE {reach['REINFORCE']:.2f}")
one_seed = {}
for kl in F.KL_TARGETS:
    read = {name: C.at_kl(hull, kl) for name, hull in hulls.items()}
    if all(r is not None for r in read.values()):
        one_seed[kl] = read["PPO"][0] - read["REINFORCE"][0]
        print(f"  KL {kl:<4g}: PPO {read['PPO'][0]:+.3f}, REINFORCE {read['REINFORCE'][0]:+.3f}; "
              f"PPO − REINFORCE {one_seed[kl]:+.3f} (seed {run.seed} alone: no spread to judge by)")

# %% [markdown]
# ## Three seeds
# One seed cannot say whether a difference is more than that seed's luck. The study trains both on
# 3 seeds (each its own pairs, reward model and RL randomness; its seed 0 is the run above when the
# study ran in this folder) and pairs them by seed at each KL that both frontiers reach: the mean
# difference, its 95 % interval (Student t over the seeds) and "no measurable difference" when that
# covers 0 (`harness.compare`). It also prints how good each seed's reward model is — the proxy
# both algorithms climb: a seed whose reward model barely ranks the held-out pairs buys little gold
# for its KL, whichever algorithm climbs it. `python -m minidpo ppo-vs-reinforce --out runs/tutorial` runs it in this
# folder (about five minutes); otherwise the lesson reads it from `runs/default` or the copy
# committed with minidpo, and says which.

# %%
found = saved_study(run, "ppo_vs_reinforce/ppo_vs_reinforce.json")
study = read_json(found) if found else None
if study is None:
    print("no PPO-vs-REINFORCE study here: " + run.command("ppo-vs-reinforce"))
else:
    print(f"Shown: {where_from(run, found)}")
    ppo_vs_reinforce.print_result(study)
    show(plots.ppo_vs_reinforce_figure(study, run.path("ppo_vs_reinforce_seeds.png")))
    print("figure:", run.path("ppo_vs_reinforce_seeds.png"))

# %% [markdown]
# ## Answers
# *Predict before running* — per sample drawn: on the same samples, which algorithm travels further
# from the reference, and at a KL both reach, which has the higher gold (paired by seed)?

# %%
if study is not None:
    a, b = ppo_vs_reinforce.A, ppo_vs_reinforce.B
    seeds = len(study["seeds"])
    final_kl = {m: [x["kl_to_ref"] for x in study["final"][m]] for m in (a, b)}
    claim_paired("KL at the end of the same sample budget", "PPO", final_kl[a], "REINFORCE", final_kl[b], ">", " nats")
    read = {}  # kl -> PPO − REINFORCE, paired over the seeds where both frontiers reach it
    for kl in study["kl_targets"]:
        d = ppo_vs_reinforce.difference(study, kl)
        if d is not None and d.n == seeds:  # every seed reaches it
            read[kl] = claim_paired(f"gold reward on the frontier at KL {kl:g}", "PPO", d.diffs, "REINFORCE",
                                    [0.0] * d.n, "=")
    one = read[min(read)] if read else None
    spread = {m: study["matched"][m][str(min(read))]["gold_std"] for m in (a, b)} if read else {}
    claim(f"at KL {min(read, default=0):g} the seed moves either algorithm's gold more than the algorithm does: each "
          "one's spread over the seeds exceeds the mean paired difference (why the seeds are paired)",
          one is not None and min(spread.values()) > abs(one.mean), difference=one.mean if one else float("nan"),
          **{f"std_{study['methods'][m]}": v for m, v in spread.items()})
    claim("at no KL both frontiers reach in every seed does PPO's gold measurably exceed REINFORCE's: its gain "
          "per sample is distance travelled, not a better trade of gold for KL",
          bool(read) and all(d.verdict != "above" for d in read.values()), kls=len(read), largest_kl=max(read, default=0.0))

# %% [markdown]
# *Predict*, second half — per minute of training: on the same samples PPO makes `epochs ×
# minibatches` passes of updates over each batch, and a value model learns beside it. The tokens
# through backward passes are exact (PPO's count its value model's too); seconds depend on the
# machine and on what else runs on it (the study's were measured on a shared machine), so the claim
# about time rests on this run's own two trainings.

# %%
faster = "REINFORCE" if reinforce["seconds"] < ppo["seconds"] else "PPO"
claim("in this run PPO's training took longer than REINFORCE's on the same samples", faster == "REINFORCE",
      ppo_seconds=ppo["seconds"], reinforce_seconds=reinforce["seconds"])
if study is not None:
    tokens = {m: study["tokens_backward"][m] for m in (a, b)}
    ratio = [x / y for x, y in zip(tokens[a], tokens[b])]
    print("tokens through backward passes, PPO / REINFORCE per seed: " + ", ".join(f"{r:.2f}" for r in ratio))
    claim("PPO spends several times REINFORCE's update compute on the same samples in every seed, and at the KLs "
          "both reach buys no measurable gold for it: per minute of training, REINFORCE is the cheaper road there",
          min(ratio) > 2 and bool(read) and all(d.verdict != "above" for d in read.values()), min_ratio=min(ratio))
print(f"this lesson took {time.perf_counter() - started:.0f}s")

# %% [markdown]
# ## What to remember
# - PPO = REINFORCE's rollouts + a value model (credit per token, through GAE) + a clipped ratio
#   (several updates per batch of samples without running away from the sampling policy).
# - The clip fraction here counts the tokens whose gradient the clip cut (as TRL counts it), not
#   every ratio outside 1 ± ε (as OpenAI baselines count it).
# - Compare RL algorithms on equal budgets and at the same KL: several updates per batch move a
#   policy further on the same samples, which is not the same as a better trade of reward for KL.
# - **Exercises**: write them yourself and have them graded — `python -m minidpo grade gae`, `python -m minidpo grade ppo-clipped-loss`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
