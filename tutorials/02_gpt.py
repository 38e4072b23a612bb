# %% [markdown]
# # 02 · A small GPT, written by hand
# **You need** lesson 01 (the tokenizer). **You will see** the facts about a GPT a learner should be
# able to predict, checked with numbers: the loss of an untrained model, two ways to compute
# attention that agree, a KV cache that changes the speed and not the tokens, and the sequence
# log-prob log π(y|x) that every later lesson trains with — computed by hand, then by the library.
# Open `minidpo/model.py` beside this script: `GPTConfig` -> `CausalSelfAttention` -> `MLP` ->
# `Block` -> `GPT`.
# Run: `python tutorials/02_gpt.py` (seconds).

# %%
import math
import time

import torch

from minidpo.harness.tutorial import claim, tutorial_run
from minidpo.data import collate, render
from minidpo.model import GPT, GPTConfig, sequence_logps

run = tutorial_run("02: the hand-written GPT, checked with numbers")
tok = run.tok
torch.manual_seed(run.seed)
model = GPT(GPTConfig(vocab_size=tok.vocab_size)).eval()
c = model.config
print(f"{model.num_params() / 1e6:.2f}M parameters (the head is tied to the token embedding): {c.n_layer} blocks, "
      f"width d = {c.n_embd}, {c.n_head} attention heads of {c.n_embd // c.n_head} dimensions each")

# %% [markdown]
# *Tied head*: the last layer, which turns a position's hidden vector into one logit per token of
# the vocabulary, reuses the token-embedding matrix (transposed) instead of a matrix of its own, as
# GPT-2 does: one (|V| × d) matrix fewer to learn, and a token's input and output vectors are one.

# %%
print("the head's weight is the embedding's:", model.lm_head.weight is model.wte.weight)

# %% [markdown]
# ## The loss at initialisation
# With N(0, 0.02) weights every logit is near 0, every token about equally likely, so the
# cross-entropy is close to $\ln |V|$.

# %%
x = torch.randint(0, tok.vocab_size, (16, 48))
_, loss = model(x[:, :-1], x[:, 1:])
print(f"initial loss {loss.item():.3f} vs ln({tok.vocab_size}) = {math.log(tok.vocab_size):.3f}")
claim("the untrained model's loss is within 0.1 nats of ln |V|", abs(loss.item() - math.log(tok.vocab_size)) < 0.1,
      loss=round(loss.item(), 4), ln_V=round(math.log(tok.vocab_size), 4))

# %% [markdown]
# ## Two attention paths, one result
# Each block splits its width d into `n_head` heads (printed above); each head attends on its own:
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\Big(\frac{QK^\top}{\sqrt{d_{head}}} + M\Big)V$$
# with Q, K, V of shape (T, d_head), d_head = d / n_head (the scale is the head's dimension, not the
# model's width), and M = −∞ above the diagonal (causal: a position sees only itself and what came
# before). The explicit path (`"math"`: the matrix products and the masked softmax, written out) is
# the one to read; PyTorch's fused `F.scaled_dot_product_attention` ("SDPA", one kernel that can do
# the same without storing the T × T matrix of scores) is the one used by default. The timings
# printed (the median of five passes) are for curiosity: at 48 positions on a CPU they are no benchmark.

# %%


def median_seconds(fn, repeats=5):
    """The median wall time of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


fast = model(x)
for block in model.blocks:
    block.attn.attention = "math"
slow = model(x)
t_math = median_seconds(lambda: model(x))
for block in model.blocks:
    block.attn.attention = "sdpa"
t_sdpa = median_seconds(lambda: model(x))
print(f"max |math - sdpa| = {(fast - slow).abs().max().item():.2e}; forward {t_math * 1e3:.1f} ms vs {t_sdpa * 1e3:.1f} ms")
claim("the two attention paths agree to 1e-5", (fast - slow).abs().max().item() < 1e-5,
      max_difference=(fast - slow).abs().max().item())

# %% [markdown]
# ## Generation with a KV cache
# Each step appends its keys and values, so the next token attends to the cache instead of
# recomputing the whole prefix: the same tokens, faster.

# %%
prompts = [tok.encode_prompt("Review: The Silent Harbor"), tok.encode_prompt("Review: The Golden Garden")]
NEW = 48  # tokens to generate: the longer the output, the more prefix a cache saves recomputing
cached = model.generate(prompts, NEW, temperature=0)
full = model.generate(prompts, NEW, temperature=0, use_cache=False)
t_cache = median_seconds(lambda: model.generate(prompts, NEW, temperature=0), 3)
t_full = median_seconds(lambda: model.generate(prompts, NEW, temperature=0, use_cache=False), 3)
print(f"same tokens: {cached == full}; {t_full * 1e3:.0f} ms without the cache, {t_cache * 1e3:.0f} ms with it "
      f"(median of 3)")
claim("the cache changes no token", cached == full)
claim("the cache makes generation faster", t_cache < t_full, speedup=round(t_full / t_cache, 2))
babble = model.generate([prompts[0]], 20, temperature=1.0, generator=torch.Generator().manual_seed(run.seed))[0]
print("an untrained model babbles (20 sampled tokens):", repr(tok.decode(babble)))

# %% [markdown]
# ## Sequence log-probs
# $\log\pi(y|x) = \sum_t \log\pi(y_t|x, y_{<t})$ over the response tokens only: the one number
# DPO and REINFORCE need. By hand first. The logits at position t predict the token at t + 1, so
# the targets are the ids shifted left by one, and the response mask is shifted with them: the
# log-prob of token t + 1 counts when token t + 1 is a response token. Prompt tokens are given, not
# scored; padding (rows of different lengths are padded on the right) is never scored.

# %%
rows = [render(tok, "Review: The Silent Harbor", "I loved this film."),
        render(tok, "Review: The Silent Harbor", "I hated this film, truly.")]
ids, mask = collate(rows, tok.end_id)                       # (2, T): right-padded, mask True on responses
logits = model(ids[:, :-1])                                 # (2, T-1, V): position t predicts ids[:, t+1]
next_logps = torch.log_softmax(logits, -1).gather(2, ids[:, 1:, None]).squeeze(-1)  # (2, T-1)
by_hand = (next_logps * mask[:, 1:]).sum(1)                 # the mask shifted like the targets
out = sequence_logps(model, ids, mask)
print(f"by hand {[round(v, 4) for v in by_hand.tolist()]}, the library's {[round(v, 4) for v in out.logps.tolist()]}; "
      f"max difference {(by_hand - out.logps).abs().max().item():.1e}")
claim("by hand and the library give the same log π(y|x)", (by_hand - out.logps).abs().max().item() < 1e-5,
      max_difference=(by_hand - out.logps).abs().max().item())
token_logps, seq = out.token_logps, out.logps
print("response tokens per row (<|end|> included):", mask.sum(1).tolist())
print("log π(y|x) per row:", [round(v, 3) for v in seq.tolist()], "(sum over response tokens)")
claim("the per-token log-probs at prompt and padding positions are exactly 0",
      bool((token_logps[~mask[:, 1:]] == 0).all()))


# %% [markdown]
# ## What to remember
# - An untrained GPT's loss is about ln |V|: every token equally likely.
# - The explicit attention and SDPA compute the same thing; the KV cache changes the speed, not the tokens.
# - log π(y|x) is a sum over the response tokens of log-probs read from the logits one position
#   earlier, with the mask shifted like the targets; prompt and padding count 0.
# - **Exercise**: write it yourself and have it graded — `python -m minidpo grade sequence-logps`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
