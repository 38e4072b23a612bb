"""Exercises on the RL road: REINFORCE's KL-penalised return with leave-one-out advantages and its
loss, GRPO's group-normalised advantages, PPO's GAE and clipped surrogate. Each solution is the
library's own function; each mistake is written out the way learners write it."""
from __future__ import annotations

import torch

from ..grpo import GRPOConfig, group_advantages, train_grpo
from ..ppo import PPOConfig, clipped_policy_loss, gae, masked_mean, train_ppo
from ..rlhf import RLHFConfig, kl_penalised_advantages, reinforce_loss, train_rlhf
from . import train
from .spec import Case, Exercise, Mistake

T, Fa = True, False  # short names keep the masks of the cases readable
F64 = torch.float64


def _t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


def train_rl(run, learner, name: str, stage: str, config, train_fn, what: str, **plug):
    """The RL stage `stage` --fast with the learner's function plugged in (`plug`: the stage's
    extension point -> the function), beside the pipeline's own run of that stage."""
    cfg, reference = run.settings(config), train.reference(run, stage)
    inputs = run.inputs(stage)

    def go(folder):
        train_fn(cfg, run.tok, inputs["sft"], inputs["reward_model"], folder, run.device, run.dtype, quiet=True,
                 out_name="policy", **plug)
        return folder / "policy.pt", {}
    yours = train.learner_unit(run, name, cfg, learner, go, inputs, "exercises.rl", what)
    method = {"rlhf": "REINFORCE", "ppo": "PPO", "grpo": "GRPO"}[stage]
    return [(f"{method}, the library's", reference), (f"{method}, yours", yours)]


# --- reinforce-advantages --------------------------------------------------------------------------
def _kl(policy, ref):
    return (policy - ref).sum(-1)


def _loo(returns):
    return returns - (returns.sum(1, keepdim=True) - returns) / (returns.size(1) - 1)


def _adv_cases():
    moved_policy = _t([[[-1.0, -0.5, 0.0, 0.0], [-2.0, -1.0, -0.2, 0.0], [-0.3, 0.0, 0.0, 0.0]],
                       [[-0.7, -0.7, -0.7, 0.0], [-1.5, 0.0, 0.0, 0.0], [-0.1, -2.5, 0.0, 0.0]]])
    moved_ref = _t([[[-1.2, -0.4, 0.0, 0.0], [-1.5, -1.1, -0.6, 0.0], [-0.9, 0.0, 0.0, 0.0]],
                    [[-0.7, -0.2, -1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [-0.4, -2.0, 0.0, 0.0]]])
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([[3, 1, 4, 2], [2, 2, 4, 1]]).unsqueeze(-1)
    inside = torch.arange(5) < lengths                           # (2, 4, 5): the response positions
    policy64 = (-torch.rand(2, 4, 5, generator=g, dtype=F64) * 2) * inside
    ref64 = (-torch.rand(2, 4, 5, generator=g, dtype=F64) * 2) * inside
    same = _t([[[-1.0, -1.0, 0.0], [-1.0, -1.0, 0.0], [-1.0, -1.0, 0.0]]])
    return [
        Case("one prompt, K = 2, the policy still the reference (KL 0)",
             (_t([[1.0, 0.0]]), _t([[[-1.0, -0.5, 0.0], [-2.0, 0.0, 0.0]]]), _t([[[-1.0, -0.5, 0.0], [-2.0, 0.0, 0.0]]]),
              0.1), (1,)),
        Case("a prompt whose K = 3 samples are alike: advantages 0", (_t([[0.5, 0.5, 0.5]]), same, same, 0.1), (1,)),
        Case("two prompts, K = 3, the policy has moved (β = 0.2)",
             (_t([[1.0, -0.5, 0.2], [0.0, 2.0, -1.0]]), moved_policy, moved_ref, 0.2), (1,)),
        Case("float64: two prompts, K = 4, responses of different lengths (β = 0.05)",
             (_t([[0.3, -1.2, 2.0, 0.0], [1.0, 1.0, -0.5, 0.7]], F64), policy64, ref64, 0.05), (1,)),
    ]


ADV_MISTAKES = (
    Mistake("baseline-includes-own", "a baseline that includes R_i itself (the plain mean of the group) correlates "
            "with the sample and biases the gradient; leave-one-out uses the mean of the OTHER K − 1.", "baseline",
            lambda r, p, q, b: (r - b * _kl(p, q).detach()) - (r - b * _kl(p, q).detach()).mean(1, keepdim=True)),
    Mistake("no-baseline", "without a baseline every sample of a good prompt is pushed up: the estimate stays "
            "unbiased but its variance is large; subtract the leave-one-out mean.", "baseline",
            lambda r, p, q, b: r - b * _kl(p, q).detach()),
    Mistake("kl-wrong-sign", "the KL penalty is SUBTRACTED: R = r − β·Σ_t log π/π_ref pays the policy for staying "
            "near the reference; adding it pays it to leave.", "return",
            lambda r, p, q, b: _loo(r + b * _kl(p, q).detach())),
    Mistake("k3-estimator", "REINFORCE folds the k1 estimate Σ_t log π/π_ref into the return: its expectation makes "
            "the gradient that of E[r] − β·KL exactly; k3 (π_ref/π − 1 − log π_ref/π) is another estimator, for "
            "reporting or for a loss term as in GRPO.", "return",
            lambda r, p, q, b: _loo(r - b * ((q - p).exp() - 1 - (q - p)).sum(-1).detach())),
    Mistake("not-detached", "the return is a constant of the REINFORCE loss: detach it, or the gradient also flows "
            "into the policy through the KL term.", "return",
            lambda r, p, q, b: _loo(r - b * _kl(p, q))),
)

REINFORCE_ADVANTAGES = Exercise(
    "reinforce-advantages", "reinforce_advantages", "core", "baseline",
    "REINFORCE's KL-penalised return and its leave-one-out advantages",
    ("rewards", "policy_token_logps", "ref_token_logps", "beta"), ("advantages",),
    """For sample i of a prompt (K samples each):
    R_i = r_i − β·Σ_t [log π(y_t|…) − log π_ref(y_t|…)]      (the k1 estimate of the KL, in the return)
    A_i = R_i − (1/(K−1))·Σ_{j≠i} R_j                         (leave-one-out baseline)

Inputs
  rewards             (B, K) float32 or float64: the reward of each of K samples of B prompts.
  policy_token_logps  (B, K, T) same dtype: log π of each response token of each sample; exactly 0
                      at positions that are not response tokens (responses have different lengths).
  ref_token_logps     (B, K, T): the same under the frozen reference.
  beta                a float ≥ 0.
Output
  (B, K) in the rewards' dtype: the advantages, DETACHED (they are constants of the REINFORCE loss).
  Within each prompt they sum to 0.""",
    kl_penalised_advantages, "minidpo/rlhf.py: kl_penalised_advantages (and leave_one_out_advantages)",
    _adv_cases, ADV_MISTAKES, detached=("advantages",),
    train=lambda run, learner, **_: train_rl(run, learner, "reinforce-advantages", "rlhf", RLHFConfig, train_rlhf,
                                        "REINFORCE --fast with your advantages", advantages_fn=learner.fn),
    train_note="trains REINFORCE --fast with your advantages",
    tolerance={"float64": (1e-6, 1e-7), "float32": (1e-5, 1e-6)})  # the library sums the KL in float32


# --- reinforce-loss -----------------------------------------------------------------------------------
def _loss_cases():
    return [
        Case("two samples", (_t([-3.0, -5.0]), _t([1.0, -1.0])), (0, 1)),
        Case("two samples whose advantages do not sum to 0 (A = [1, 1]: push both up)",
             (_t([-3.0, -5.0]), _t([1.0, 1.0])), (0, 1)),
        Case("float64, three samples", (_t([-4.0, -1.0, -2.5], F64), _t([-0.2, 0.4, -0.2], F64)), (0, 1)),
        Case("four samples, one advantage 0", (_t([-2.0, -0.5, -7.0, -1.0]), _t([0.5, 0.0, -1.5, 1.0])), (0, 1)),
    ]


LOSS_MISTAKES = (
    Mistake("sign-flipped", "gradient DESCENT on −A·log π raises the log-prob of samples with A > 0; +A·log π "
            "lowers them.", "reinforce-loss", lambda lp, a: (a.detach() * lp).mean()),
    Mistake("advantages-not-detached", "A is a constant: only log π carries gradient (detach A, or a gradient flows "
            "into whatever computed it).", "reinforce-loss", lambda lp, a: -(a * lp).mean()),
    Mistake("sum-not-mean", "the loss is the MEAN over samples: a sum scales the step with the batch size.",
            "reinforce-loss", lambda lp, a: -(a.detach() * lp).sum()),
    Mistake("probabilities-not-log-probs", "the policy gradient is E[A·∇log π]: the loss multiplies A by the "
            "LOG-probability, not the probability.", "reinforce-loss", lambda lp, a: -(a.detach() * lp.exp()).mean()),
    Mistake("advantages-recentred", "the loss takes the advantages as the baseline made them: subtracting their mean "
            "again (a second baseline, or PPO-style whitening) changes the estimate; with A = [1, 1] both samples "
            "should be pushed up, and the re-centred loss pushes neither.", "reinforce-loss",
            lambda lp, a: -((a - a.mean()).detach() * lp).mean()),
)

REINFORCE_LOSS = Exercise(
    "reinforce-loss", "reinforce_loss", "core", "reinforce-loss", "the REINFORCE loss on sequence log-probs",
    ("seq_logps", "advantages"), ("loss",),
    """L = −(1/N)·Σ_i A_i·log π(y_i|x_i)      (its gradient is the policy gradient estimate)

Inputs
  seq_logps   (N,) float32 or float64: log π(y_i|x_i) of N samples, summed over response tokens,
              carrying gradient.
  advantages  (N,) same dtype: their advantages (constants: no gradient may flow into them).
Output
  a scalar (shape ()) in the inputs' dtype, differentiable w.r.t. seq_logps.""",
    reinforce_loss, "minidpo/rlhf.py: reinforce_loss", _loss_cases, LOSS_MISTAKES,
    train=lambda run, learner, **_: train_rl(run, learner, "reinforce-loss", "rlhf", RLHFConfig, train_rlhf,
                                        "REINFORCE --fast with your loss", loss_fn=learner.fn),
    train_note="trains REINFORCE --fast with your loss")


# --- group-advantages ------------------------------------------------------------------------------------
def _group_cases():
    return [
        Case("one group of two", (_t([[1.0, 0.0]]),)),
        Case("a group whose rewards are all equal: no signal, and no NaN", (_t([[0.3, 0.3, 0.3]]),)),
        Case("two groups of different spread", (_t([[1.0, 2.0, 3.0, 6.0], [10.0, -10.0, 0.0, 0.0]]),)),
        Case("float64, three groups of three", (_t([[0.5, -0.5, 0.0], [2.0, 2.0, 2.0], [1.0, 4.0, -2.0]], F64),)),
    ]


GROUP_MISTAKES = (
    Mistake("zero-variance-divides-by-zero", "a group whose rewards are all equal has std 0: (r − mean)/std is 0/0 = "
            "NaN; the ε = 1e-4 in the denominator makes it 0 (no signal), as in the paper.", "baseline",
            lambda r: (r - r.mean(1, keepdim=True)) / r.std(1, keepdim=True)),
    Mistake("population-std", "the group's std is the sample standard deviation (torch.std's default, divided by "
            "K − 1), not the population one (divided by K, numpy's default).", "baseline",
            lambda r: (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True, correction=0) + 1e-4)),
    Mistake("normalised-over-batch", "the baseline of GRPO is the sample's OWN group (its prompt): mean and std over "
            "the whole batch compare answers to different prompts.", "baseline",
            lambda r: (r - r.mean()) / (r.std() + 1e-4)),
    Mistake("mean-only", "GRPO divides by the group's spread as well: (r − mean)/(std + ε); subtracting the mean "
            "alone is a plain group baseline.", "baseline", lambda r: r - r.mean(1, keepdim=True)),
)

GROUP_ADVANTAGES = Exercise(
    "group-advantages", "group_advantages", "variant", "baseline",
    "GRPO's group-normalised advantages (DeepSeekMath eq. 3's Â)",
    ("rewards",), ("advantages",),
    """A_i = (r_i − mean(r_group)) / (std(r_group) + 1e-4), within each group (the K samples of one prompt).
(The same idea as REINFORCE's leave-one-out baseline, plus the division by the group's spread;
GRPO itself is explained in minidpo/grpo.py's docstring.)

Inputs
  rewards   (B, K) float32 or float64, K ≥ 2: row b holds the rewards of prompt b's K samples.
Output
  (B, K) in the rewards' dtype. std is the sample standard deviation (divided by K − 1, torch's
  default); ε = 1e-4 exactly. A group whose rewards are all equal gets advantages 0, not NaN.""",
    group_advantages, "minidpo/grpo.py: group_advantages", _group_cases, GROUP_MISTAKES,
    train=lambda run, learner, **_: train_rl(run, learner, "group-advantages", "grpo", GRPOConfig, train_grpo,
                                        "GRPO --fast with your advantages", advantages_fn=learner.fn),
    train_note="trains GRPO --fast with your advantages")


# --- gae ---------------------------------------------------------------------------------------------------
def _gae_loop(rewards, values, mask, gamma, lam, mask_values=True, mask_advantages=True, use_lam=True):
    """GAE's advantages written out backwards, with the switches of the classic mistakes."""
    m = mask.to(rewards.dtype)
    v = values * m if mask_values else values
    adv = torch.zeros_like(rewards)
    next_v = next_a = torch.zeros(rewards.size(0), dtype=rewards.dtype)
    for t in reversed(range(rewards.size(1))):
        delta = rewards[:, t] + gamma * next_v - v[:, t]
        a = delta + gamma * (lam if use_lam else 1.0) * next_a
        adv[:, t] = a * m[:, t] if mask_advantages else a
        next_v, next_a = v[:, t], adv[:, t]
    return adv


def _gae_cases():
    two_mask = torch.tensor([[Fa, T, T, T, Fa, Fa], [Fa, Fa, T, Fa, Fa, Fa]])
    two_rewards = [[0.0, -0.1, 0.05, 1.0, 0.0, 0.0], [0.0, 0.0, -0.5, 0.0, 0.0, 0.0]]
    two_values = [[0.2, 0.3, 0.6, 0.4, 0.9, -0.8], [0.1, 0.5, 0.3, 1.2, 0.7, 0.6]]
    return [
        Case("one row: a prompt position, then two response tokens; γ = λ = 1",
             (_t([[0.0, 0.1, 1.0]]), _t([[0.3, 0.5, 0.2]]), torch.tensor([[Fa, T, T]]), 1.0, 1.0)),
        Case("a one-token response, then padding whose values are not 0; γ = 0.9, λ = 0.8",
             (_t([[0.0, 0.0, 0.5, 0.0]]), _t([[0.1, 0.2, 0.4, 0.7]]), torch.tensor([[Fa, Fa, T, Fa]]), 0.9, 0.8)),
        Case("two rows of different lengths, right-padded; γ = 0.9, λ = 0.8",
             (_t(two_rewards), _t(two_values), two_mask, 0.9, 0.8)),
        Case("the same rows in float64, γ = 1, λ = 0.95", (_t(two_rewards, F64), _t(two_values, F64), two_mask, 1.0, 0.95)),
    ]


def _with_returns(adv, values, mask, add_values=True):
    """(advantages, returns = (A + V)·mask), V read inside the response only."""
    m = mask.to(adv.dtype)
    return adv, ((adv + values * m) * m if add_values else adv * m)


GAE_MISTAKES = (
    Mistake("bootstrap-past-end", "V(s_{t+1}) after a response's last token is 0: the episode has ended. Reading the "
            "value at the next position bootstraps from padding (or the next sample).", "gae",
            lambda r, v, m, g, l: _with_returns(_gae_loop(r, v, m, g, l, mask_values=False), v, m), ("advantages",)),
    Mistake("lambda-forgotten", "A_t = δ_t + γλ·A_{t+1}: without λ the advantage is the Monte-Carlo return minus V "
            "(λ = 1), with its full variance.", "gae",
            lambda r, v, m, g, l: _with_returns(_gae_loop(r, v, m, g, l, use_lam=False), v, m), ("advantages",)),
    Mistake("not-masked", "outside the response there is no action: advantages (and returns) there are 0, and the "
            "recursion must not run through prompt or padding positions.", "gae",
            lambda r, v, m, g, l: (lambda a: (a, a + v))(_gae_loop(r, v, m, g, l, False, False)), ("advantages",)),
    Mistake("returns-without-values", "the value targets are R_t = A_t + V(s_t): GAE estimates the advantage, the "
            "return adds the baseline back.", "gae",
            lambda r, v, m, g, l: _with_returns(_gae_loop(r, v, m, g, l), v, m, add_values=False), ("returns",)),
)

GAE = Exercise(
    "gae", "gae", "variant", "gae", "generalised advantage estimation along each response",
    ("rewards", "values", "mask", "gamma", "lam"), ("advantages", "returns"),
    """Backwards along each row, over its response tokens (mask True):
    δ_t = r_t + γ·V(s_{t+1}) − V(s_t)        A_t = δ_t + γλ·A_{t+1}        R_t = A_t + V(s_t)
with V(s_{t+1}) = 0 and A_{t+1} = 0 after the last response token (the episode ends there).

Inputs
  rewards  (B, T) float32 or float64: per-token rewards (0 outside the response).
  values   (B, T) same dtype: the value model's V(s_t) at every position, including prompt and
           padding positions, where it is NOT 0 (ignore it there).
  mask     (B, T) bool: True at response tokens; rows have different lengths (right padding).
  gamma, lam  floats in [0, 1].
Output, a tuple of two (B, T) tensors in the rewards' dtype, both exactly 0 where mask is False:
  advantages  A_t;   returns  R_t = A_t + V(s_t).""",
    gae, "minidpo/ppo.py: gae", _gae_cases, GAE_MISTAKES,
    train=lambda run, learner, **_: train_rl(run, learner, "gae", "ppo", PPOConfig, train_ppo,
                                        "PPO --fast with your gae",  # PPO's mask is float; the exercise's bool
                                        gae_fn=lambda r, v, m, g, l: learner.fn(r, v, m.bool(), g, l)),
    train_note="trains PPO --fast with your GAE")


# --- ppo-clipped-loss ------------------------------------------------------------------------------------
def ppo_solution(new_logps, old_logps, advantages, mask, clip):
    return clipped_policy_loss(new_logps, old_logps, advantages, mask, clip)[0]


def _ppo_cases():
    pad_mask = torch.tensor([[T, T, T], [T, Fa, Fa]])
    return [
        Case("one token, π_θ = π_old (ratio 1)", (_t([[-1.0]]), _t([[-1.0]]), _t([[0.5]]), torch.tensor([[T]]), 0.2),
             (0,)),
        Case("float64, ε = 0.1", (_t([[-0.1, -2.0, -0.7]], F64), _t([[-0.3, -1.8, -0.7]], F64),
                                  _t([[-1.0, 2.0, 0.3]], F64), torch.tensor([[T, T, T]]), 0.1), (0,)),
        Case("ratios outside [1 − ε, 1 + ε], advantages of both signs",
             (_t([[-0.5, -2.5, -0.9, -1.3]]), _t([[-1.0, -2.0, -1.0, -1.0]]), _t([[1.0, -1.0, -1.0, 1.0]]),
              torch.tensor([[T, T, T, T]]), 0.2), (0,)),
        Case("two rows, the second padded: padding must not count",
             (_t([[-0.2, -1.0, -3.0], [-1.5, 5.0, 5.0]]), _t([[-0.4, -1.1, -2.0], [-1.0, 0.0, 0.0]]),
              _t([[0.5, -2.0, 1.0], [1.5, 9.0, 9.0]]), pad_mask, 0.2), (0,)),
    ]


def _surrogate(new, old, adv, clip, ratio=None, pick=torch.maximum, clipped=True):
    ratio = torch.exp(new - old) if ratio is None else ratio
    return pick(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)) if clipped else -adv * ratio


PPO_MISTAKES = (
    Mistake("min-not-max", "PPO takes the pessimistic bound: the LARGER of the two losses, max(−Aρ, −A·clip(ρ)) "
            "(the min of the two objectives); the smaller one ignores the clip exactly where it should bind.",
            "clip", lambda n, o, a, m, c: masked_mean(_surrogate(n, o, a, c, pick=torch.minimum), m)),
    Mistake("no-clip", "without the clip, several updates on one batch can move π_θ far from the policy that "
            "sampled it: −A·clip(ρ, 1 − ε, 1 + ε) bounds how much one sample can pull.", "clip",
            lambda n, o, a, m, c: masked_mean(_surrogate(n, o, a, c, clipped=False), m)),
    Mistake("ratio-not-exponentiated", "the ratio is π_θ/π_old = exp(log π_θ − log π_old), not the difference of the "
            "log-probs.", "clip", lambda n, o, a, m, c: masked_mean(_surrogate(n, o, a, c, ratio=n - o), m)),
    Mistake("mask-ignored", "the loss is a mean over RESPONSE tokens: padding positions hold arbitrary numbers and "
            "must not count.", "clip", lambda n, o, a, m, c: _surrogate(n, o, a, c).mean()),
    Mistake("divided-by-all-positions", "masked out, the padding adds 0 to the sum, but the mean must divide by the "
            "number of response tokens, not by every position.", "clip",
            lambda n, o, a, m, c: (_surrogate(n, o, a, c) * m).sum() / m.numel()),
)

PPO_CLIPPED_LOSS = Exercise(
    "ppo-clipped-loss", "ppo_clipped_loss", "variant", "clip", "PPO's clipped surrogate loss (PPO eq. 7), per token",
    ("new_logps", "old_logps", "advantages", "mask", "clip"), ("loss",),
    """ρ_t = π_θ(y_t) / π_old(y_t) = exp(new_logps − old_logps)
L = mean over response tokens of  max(−A_t·ρ_t, −A_t·clip(ρ_t, 1 − ε, 1 + ε))

Inputs
  new_logps   (B, T) float32 or float64: log π_θ(y_t) under the policy being updated (with gradient).
  old_logps   (B, T) same dtype: log π_old(y_t) under the policy that SAMPLED the batch.
  advantages  (B, T) same dtype: A_t per token.
  mask        (B, T) bool: True at response tokens; padding positions hold arbitrary numbers.
  clip        ε, a float in (0, 1).
Output
  a scalar (shape ()) in the inputs' dtype: the mean over the response tokens of the whole batch
  (sum over masked positions / number of masked positions), differentiable w.r.t. new_logps.""",
    ppo_solution, "minidpo/ppo.py: clipped_policy_loss (it also returns the clip fraction)", _ppo_cases,
    PPO_MISTAKES,
    train=lambda run, learner, **_: train_rl(
        run, learner, "ppo-clipped-loss", "ppo", PPOConfig, train_ppo, "PPO --fast with your clipped loss",
        policy_loss_fn=lambda new, old, adv, m, c: (learner.fn(new, old, adv, m.bool(), c),
                                                     clipped_policy_loss(new.detach(), old, adv, m, c)[1])),
    train_note="trains PPO --fast with your clipped loss (the logged clip fraction stays the library's)")


EXERCISES = (REINFORCE_ADVANTAGES, REINFORCE_LOSS, GROUP_ADVANTAGES, GAE, PPO_CLIPPED_LOSS)
