"""minidpo: Direct Preference Optimization and the RLHF pipeline it replaces, from scratch.

A module a concept: tokenizer, world (the toy task and its gold reward), model (the GPT),
sft, preferences, losses (DPO and Bradley–Terry), dpo, reward_model, rlhf, evaluate,
bandit (the exact equivalence lab), pipeline (everything in one run folder).
"""
__version__ = "0.1.0"
