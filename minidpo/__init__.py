"""minidpo: Direct Preference Optimization and the RLHF pipeline it replaces, from scratch.

The story, at the top of the package in reading order: world (the toy task and its gold reward),
tokenizer, model (the GPT), data, sampling, training, checkpoint, distributed, sft, preferences,
losses (the DPO loss and its variants), dpo, reward_model, rollouts, rlhf (REINFORCE), ppo, grpo,
bandit (the exact equivalence lab), evaluate.
Around it: studies/ (experiments that import the story), harness/ (the CLI, the stage table, the run
folder and its provenance, the report and the figures), interop/ (GPT-2 and safetensors),
tools/ (benchmark, notebook generation). The core imports nothing from those folders.
"""
__version__ = "0.1.0"
