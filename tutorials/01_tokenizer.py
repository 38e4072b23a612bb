# %% [markdown]
# # 01 · A byte-level BPE, trained here, served by tiktoken
# **You need** nothing: this is the start. **You will see** text become the integers a model reads.
# Language models read integers. We train a small byte-level BPE on our own corpus (the toy review
# world), save its merges in tiktoken's text format, and serve them with a `tiktoken.Encoding`.
# Nothing is downloaded. Run: `python tutorials/01_tokenizer.py` (add `--fast` for a smoke run).

# %%
import time

from minidpo import world
from minidpo.harness.tutorial import lesson_knobs, tutorial_run
from minidpo.tokenizer import Tokenizer, train_bpe

run = tutorial_run("01: train a byte-level BPE and serve it with tiktoken")
knobs = lesson_knobs(merges=512)  # the number of merges the BPE learns (a Try below changes it)

# %% [markdown]
# ## The corpus
# Prompt → response examples from the world's grammar: the text the tokenizer is trained on.

# %%
corpus = world.make_corpus(2000 if run.fast else 20000, seed=run.seed)
text = "\n".join(p + "\n" + r for p, r in corpus)
print(f"{len(corpus)} examples, {len(text) / 1e6:.2f} MB of text; first three:")
for p, r in corpus[:3]:
    print(f"  {p!r} -> {r!r}")

# %% [markdown]
# ## Training byte-level BPE
# Start from the 256 bytes; repeatedly merge the most frequent adjacent pair into a new token.
# Word counts and incremental pair updates make this take about a second.
# *Question*: why do the world's words end up as single tokens?
# *Try*: `--set merges=64` (or set `merges` in the knobs cell and re-run from there): with fewer
# merges the same reviews take more tokens each (`tokens_per_review` rises).

# %%
t0 = time.perf_counter()
ranks = train_bpe(text, num_merges=knobs.merges)
print(f"{len(ranks) - 256} merges learned in {time.perf_counter() - t0:.2f}s "
      f"(training stops early once no pair occurs twice)")
learned = sorted(ranks.items(), key=lambda kv: kv[1])[256:266]
print("first merges:", [tok.decode("utf-8", "replace") for tok, _ in learned])

# %% [markdown]
# ## Served by tiktoken
# A `tiktoken.Encoding` built from our merge ranks (no download: `get_encoding("gpt2")` needs
# the internet). The merges shipped in data/ were trained the same way.

# %%
tok = Tokenizer(ranks)
shipped = Tokenizer.load()
print(f"this tokenizer: {tok.vocab_size} tokens; shipped one: {shipped.vocab_size} tokens")
tokens_per_review = sum(len(tok.encode(r)) for _, r in corpus[:500]) / 500
print(f"this tokenizer spends {tokens_per_review:.1f} tokens on a review (mean of 500), "
      f"{sum(len(r.encode()) for _, r in corpus[:500]) / 500:.1f} bytes")
sample = corpus[0][1]
ids = shipped.encode(sample)
print(f"{sample!r} -> {len(ids)} tokens: {[shipped.decode([i]) for i in ids]}")

# %% [markdown]
# ## Lossless on any text
# Every byte is a token, so any string round-trips, emoji included.

# %%
for s in ["Très bien! 🙂", "世界 \x00\t<|end|>", "The Silent Harbor was a brilliant film."]:
    back = shipped.decode(shipped.encode(s))
    print(f"{s!r}: {len(shipped.encode(s))} tokens, round trip exact: {back == s}")

# %% [markdown]
# ## Prompt and response, tokenized apart
# `<|prompt|> x <|response|> y <|end|>`, with x and y tokenized separately: no BPE merge can cross
# the boundary, so the response mask — which tokens DPO scores — is exact by construction.

# %%
prompt, response = corpus[0]
p_ids, r_ids = shipped.encode_prompt(prompt), shipped.encode_response(response)
print("prompt ids  :", p_ids)
print("response ids:", r_ids, f"(ends with <|end|> = {shipped.end_id})")

# %% [markdown]
# ## Answers
# *Why do the world's words end up as single tokens?* BPE merges the most frequent adjacent pair
# first, again and again. The world writes every review from a few dozen words, so each of them
# (with the space before it) is among the most frequent byte sequences and is merged into one token
# long before any rarer string is. The count, on the shipped tokenizer:

# %%
words = sorted({w for _, r in corpus for w in r.replace(".", " ").split()})
single = [w for w in words if len(shipped.encode(" " + w)) == 1]
print(f"{len(single)} of the corpus's {len(words)} distinct words are one token with their leading space; "
      f"the others: {[w for w in words if w not in single][:12]}")

# %% [markdown]
# ## What to remember
# - A byte-level BPE learns merges from counts; served by tiktoken it round-trips any text exactly.
# - Fewer merges, more tokens per review: the vocabulary trades size for sequence length.
# - Prompt and response are tokenized separately, so no token crosses the boundary (lesson 03's mask).
