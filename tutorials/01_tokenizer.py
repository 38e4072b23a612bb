# %% [markdown]
# # 01 · A byte-level BPE, trained here, served by tiktoken
# **You need** nothing: this is the start. **You will see** text become the integers a model reads.
# Language models read integers. We train a small byte-level BPE on our own corpus (the toy review
# world), save its merges in tiktoken's text format, and serve them with a `tiktoken.Encoding`.
# Nothing is downloaded. Run: `python tutorials/01_tokenizer.py` (add `--fast` for a smoke run).

# %%
import time

from minidpo import world
from minidpo.harness.tutorial import claim, lesson_knobs, tutorial_run
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
# Start from the 256 bytes; repeatedly merge the most frequent adjacent pair into a new token,
# until the budget of merges is spent or no pair occurs twice. Word counts and incremental pair
# updates make this quick (timed below).
# *Question*: why do the world's words end up as single tokens?
# *Try*: `--set merges=64` (or set `merges` in the knobs cell and re-run from there): with fewer
# merges the same reviews take more tokens each (`tokens_per_review` rises).

# %%
t0 = time.perf_counter()
ranks = train_bpe(text, num_merges=knobs.merges)
seconds = time.perf_counter() - t0
merges_learned = len(ranks) - 256
print(f"{merges_learned} merges learned in {seconds:.2f}s (budget {knobs.merges})")
claim("training the merges takes under a second", seconds < 1, seconds=round(seconds, 3))
claim("the budget never binds: training stopped because no pair occurred twice any more",
      merges_learned < knobs.merges, learned=merges_learned, budget=knobs.merges)
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
# Every byte is a token, so any string round-trips, emoji included. The text "<|end|>" typed in a
# string is *not* the special end token: `encode` reads it as ordinary bytes (several tokens), so a
# review that happens to contain those characters cannot end a response early.

# %%
for s in ["Très bien! 🙂", "世界 \x00\t<|end|>", "The Silent Harbor was a brilliant film."]:
    back = shipped.decode(shipped.encode(s))
    print(f"{s!r}: {len(shipped.encode(s))} tokens, round trip exact: {back == s}")
typed_end = shipped.encode("<|end|>")
print(f"the text '<|end|>' -> {typed_end}; the special token <|end|> is id {shipped.end_id}")
claim("the typed text '<|end|>' is ordinary tokens, never the special end token",
      shipped.end_id not in typed_end, tokens=len(typed_end))

# %% [markdown]
# ## Prompt and response, tokenized apart
# `<|prompt|> x <|response|> y <|end|>`, with x and y tokenized separately: no BPE merge can cross
# the boundary, so the response mask — which tokens DPO scores — is exact by construction. The
# `<|end|>` token belongs to the response y: every log-prob of y includes it, so the model is
# trained (and scored) on when to stop, and a response's length counts it.

# %%
prompt, response = corpus[0]
p_ids, r_ids = shipped.encode_prompt(prompt), shipped.encode_response(response)
print("prompt ids  :", p_ids)
print("response ids:", r_ids, f"(ends with <|end|> = {shipped.end_id})")

# %% [markdown]
# ## Answers
# *Why do the world's words end up as single tokens?* BPE merges the most frequent adjacent pair
# first, again and again, until no pair occurs twice. The world writes every review from a small
# lexicon, so with the default budget BPE runs out of pairs before it runs out of merges (the claim
# above): every word, with the space before it, becomes one token. The count, on the shipped
# tokenizer:

# %%
counts = {}
for _, r in corpus:
    for w in r.replace(".", " ").split():
        counts[w] = counts.get(w, 0) + 1
words = sorted(counts)
single = [w for w in words if len(shipped.encode(" " + w)) == 1]
print(f"{len(single)} of the corpus's {len(words)} distinct words are one token with their leading space; "
      f"the others: {[w for w in words if w not in single][:12]}")
claim("the world writes its reviews from under a hundred distinct words", len(words) < 100, words=len(words))
claim("every one of them is a single token (with its leading space)", len(single) == len(words),
      single=len(single), words=len(words))

# %% [markdown]
# Which words come first shows when the budget *does* bind: 64 merges (the *Try*'s value). The words
# that are already one token are the frequent ones: their counts in the corpus against the others'.

# %%
tight = Tokenizer(train_bpe(text, num_merges=64))
whole = [w for w in words if len(tight.encode(" " + w)) == 1]
rest = [w for w in words if w not in whole]
median = lambda ws: sorted(counts[w] for w in ws)[len(ws) // 2]
print(f"64 merges: {len(whole)} words are one token (median count {median(whole)}), {len(rest)} are not "
      f"(median count {median(rest)}); one token: {whole[:10]}")
claim("with a binding budget the frequent words are merged first: the one-token words' median count is "
      "above the others'", median(whole) > median(rest), one_token=median(whole), others=median(rest))

# %% [markdown]
# ## What to remember
# - A byte-level BPE learns merges from counts; served by tiktoken it round-trips any text exactly.
# - Fewer merges, more tokens per review: the vocabulary trades size for sequence length.
# - Prompt and response are tokenized separately, so no token crosses the boundary (lesson 03's mask).
# - The special `<|end|>` token ends every response and is part of it (scored, counted in its length);
#   the same characters typed as text are ordinary tokens.
