"""What the exercises' tests share: the library-backed answer to every exercise, as a learner who
reads the library would write it (each a file's text)."""
import pytest

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


@pytest.fixture(scope="session")
def solutions():
    return SOLUTIONS
