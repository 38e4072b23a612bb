"""Answers to every exercise, as files' text: the library-backed ones (a learner who reads the
library) and ones written from scratch (a learner who does not). The tests' fixtures (conftest.py)
and the generated class (class_of.py) read them."""
from minidpo.exercises import bug_hunt

SOLUTIONS = {
    "sequence-logps": """
from minidpo.model import sequence_logps as library

def sequence_logps(logits, input_ids, response_mask):
    return library(lambda ids: logits[:, :ids.size(1)], input_ids, response_mask).logps
""",
    "bradley-terry-loss": "from minidpo.losses import bradley_terry_loss\n",
    "reinforce-advantages": """
from minidpo.rlhf import kl_penalised_advantages

def reinforce_advantages(rewards, policy_token_logps, ref_token_logps, beta):
    return kl_penalised_advantages(rewards, policy_token_logps, ref_token_logps, beta)
""",
    "reinforce-loss": "from minidpo.rlhf import reinforce_loss\n",
    "group-advantages": "from minidpo.grpo import group_advantages\n",
    "optimal-policy": """
from minidpo.bandit import log_partition, optimal_logp

def optimal_policy(ref_logp, reward, beta):
    return optimal_logp(ref_logp, reward, beta), log_partition(ref_logp, reward, beta)
""",
    "dpo-loss": """
from minidpo import losses

def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    return losses.dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
""",
    "conservative-dpo-loss": """
from minidpo.losses import sigmoid_loss

def conservative_dpo_loss(h, beta, label_smoothing):
    return sigmoid_loss(h, beta, label_smoothing)
""",
    "gae": "from minidpo.ppo import gae\n",
    "ppo-clipped-loss": """
from minidpo.ppo import clipped_policy_loss

def ppo_clipped_loss(new_logps, old_logps, advantages, mask, clip):
    return clipped_policy_loss(new_logps, old_logps, advantages, mask, clip)[0]
""",
    "bug-hunt": f"def planted_bug():\n    return {bug_hunt.planted(0)!r}\n",
}


OWN = {  # written from the stubs' specifications alone: no minidpo import
    "sequence-logps": """
import torch

def sequence_logps(logits, input_ids, response_mask):
    token = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, input_ids[:, 1:, None])[..., 0]
    return torch.where(response_mask[:, 1:], token, torch.zeros_like(token)).sum(1)
""",
    "bradley-terry-loss": """
import torch.nn.functional as F

def bradley_terry_loss(chosen_scores, rejected_scores):
    return -F.logsigmoid(chosen_scores - rejected_scores)
""",
    "reinforce-advantages": """
def reinforce_advantages(rewards, policy_token_logps, ref_token_logps, beta):
    returns = rewards - beta * (policy_token_logps.detach() - ref_token_logps).sum(-1)
    k = returns.shape[1]
    return (returns - (returns.sum(1, keepdim=True) - returns) / (k - 1)).detach()
""",
    "reinforce-loss": """
def reinforce_loss(seq_logps, advantages):
    return -(advantages.detach() * seq_logps).mean()
""",
    "group-advantages": """
def group_advantages(rewards):
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
""",
    "optimal-policy": """
import torch

def optimal_policy(ref_logp, reward, beta):
    scores = ref_logp + reward / beta
    log_z = torch.logsumexp(scores, dim=-1)
    return scores - log_z[:, None], log_z
""",
    "dpo-loss": """
import torch.nn.functional as F

def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(chosen - rejected), chosen.detach(), rejected.detach()
""",
    "conservative-dpo-loss": """
import torch.nn.functional as F

def conservative_dpo_loss(h, beta, label_smoothing):
    return -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
""",
    "gae": """
import torch

def gae(rewards, values, mask, gamma, lam):
    m = mask.to(rewards.dtype)
    v = values * m
    advantages = torch.zeros_like(rewards)
    next_value = next_advantage = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - v[:, t]
        advantages[:, t] = (delta + gamma * lam * next_advantage) * m[:, t]
        next_value, next_advantage = v[:, t], advantages[:, t]
    return advantages, (advantages + v) * m
""",
    "ppo-clipped-loss": """
import torch

def ppo_clipped_loss(new_logps, old_logps, advantages, mask, clip):
    ratio = torch.exp(new_logps - old_logps)
    losses = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    return losses[mask].mean()
""",
    "bug-hunt": SOLUTIONS["bug-hunt"],
}
