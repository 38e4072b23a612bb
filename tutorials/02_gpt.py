# %% [markdown]
# # 02 · A small GPT, written by hand
# Open `minidpo/model.py` beside this script: `GPTConfig` -> `CausalSelfAttention` -> `MLP` ->
# `Block` -> `GPT`. Here we check, with numbers, the facts a learner should be able to predict.
# Run: `python tutorials/02_gpt.py`.

# %%
import math
import time

import torch

from minidpo.harness.tutorial import tutorial_run
from minidpo.data import collate, render
from minidpo.model import GPT, GPTConfig, sequence_logps

run = tutorial_run("02: the hand-written GPT, checked with numbers")
tok = run.tok
torch.manual_seed(run.seed)
model = GPT(GPTConfig(vocab_size=tok.vocab_size)).eval()
print(f"{model.num_params() / 1e6:.2f}M parameters (the head is tied to the token embedding)")

# %% [markdown]
# ## The loss at initialisation
# With N(0, 0.02) weights every logit is near 0, every token about equally likely, so the
# cross-entropy is close to $\ln |V|$.

# %%
x = torch.randint(0, tok.vocab_size, (16, 48))
_, loss = model(x[:, :-1], x[:, 1:])
print(f"initial loss {loss.item():.3f} vs ln({tok.vocab_size}) = {math.log(tok.vocab_size):.3f}")

# %% [markdown]
# ## Two attention paths, one result
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\Big(\frac{QK^\top}{\sqrt{d}} + M\Big)V$$
# with M = −∞ above the diagonal (causal). The explicit path is the one to read; PyTorch's fused
# `scaled_dot_product_attention` is the fast one; they agree to 1e-5.

# %%
fast = model(x)
for block in model.blocks:
    block.attn.attention = "math"
t0 = time.perf_counter()
slow = model(x)
t_math = time.perf_counter() - t0
for block in model.blocks:
    block.attn.attention = "sdpa"
t0 = time.perf_counter()
model(x)
t_sdpa = time.perf_counter() - t0
print(f"max |math - sdpa| = {(fast - slow).abs().max().item():.2e}; forward {t_math * 1e3:.1f} ms vs {t_sdpa * 1e3:.1f} ms")

# %% [markdown]
# ## Generation with a KV cache
# Each step appends its keys and values, so the next token attends to the cache instead of
# recomputing the whole prefix: the same tokens, faster.

# %%
prompts = [tok.encode_prompt("Review: The Silent Harbor"), tok.encode_prompt("Review: The Golden Garden")]
t0 = time.perf_counter()
cached = model.generate(prompts, 32, temperature=0)
t_cache = time.perf_counter() - t0
t0 = time.perf_counter()
full = model.generate(prompts, 32, temperature=0, use_cache=False)
t_full = time.perf_counter() - t0
print(f"same tokens: {cached == full}; {t_full / t_cache:.1f}x faster with the cache")
babble = model.generate([prompts[0]], 20, temperature=1.0, generator=torch.Generator().manual_seed(run.seed))[0]
print("an untrained model babbles (20 sampled tokens):", repr(tok.decode(babble)))

# %% [markdown]
# ## Sequence log-probs
# $\log\pi(y|x) = \sum_t \log\pi(y_t|x, y_{<t})$ over the response tokens only: the one number
# DPO and REINFORCE need.

# %%
rows = [render(tok, "Review: The Silent Harbor", "I loved this film."),
        render(tok, "Review: The Silent Harbor", "I hated this film.")]
ids, mask = collate(rows, tok.end_id)
out = sequence_logps(model, ids, mask)
token_logps, seq = out.token_logps, out.logps
print("response tokens per row:", mask.sum(1).tolist())
print("log π(y|x) per row:", [round(v, 3) for v in seq.tolist()], "(sum over response tokens)")
print("per-token log-probs at prompt positions are exactly 0:", bool((token_logps[~mask[:, 1:]] == 0).all()))
