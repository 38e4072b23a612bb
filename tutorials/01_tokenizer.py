# %% [markdown]
# # 01 · A byte-level BPE, trained here, served by tiktoken
# Language models read integers. We train a small byte-level BPE on our own corpus (the toy review
# world), save its merges in tiktoken's text format, and serve them with a `tiktoken.Encoding`.
# Nothing is downloaded. Run: `python tutorials/01_tokenizer.py` (add `--fast` for a smoke run).

# %%
import time

from minidpo import world
from minidpo.cli import tutorial_run
from minidpo.tokenizer import Tokenizer, train_bpe

run = tutorial_run("01: train a byte-level BPE and serve it with tiktoken")

# %% The corpus: prompt -> response examples from the world's grammar
corpus = world.make_corpus(2000 if run.fast else 20000, seed=run.seed)
text = "\n".join(p + "\n" + r for p, r in corpus)
print(f"{len(corpus)} examples, {len(text) / 1e6:.2f} MB of text; first three:")
for p, r in corpus[:3]:
    print(f"  {p!r} -> {r!r}")

# %% Train merges: word counts + incremental pair updates make this take about a second
t0 = time.perf_counter()
ranks = train_bpe(text, num_merges=512)
print(f"{len(ranks) - 256} merges learned in {time.perf_counter() - t0:.2f}s "
      f"(training stops early once no pair occurs twice)")
learned = sorted(ranks.items(), key=lambda kv: kv[1])[256:266]
print("first merges:", [tok.decode("utf-8", "replace") for tok, _ in learned])

# %% Serve them with tiktoken; the shipped merges in data/ were trained the same way
tok = Tokenizer(ranks)
shipped = Tokenizer.load()
print(f"this tokenizer: {tok.vocab_size} tokens; shipped one: {shipped.vocab_size} tokens")
sample = corpus[0][1]
ids = shipped.encode(sample)
print(f"{sample!r} -> {len(ids)} tokens: {[shipped.decode([i]) for i in ids]}")

# %% Lossless on ANY text, thanks to the byte fallback
for s in ["Très bien! 🙂", "世界 \x00\t<|end|>", "The Silent Harbor was a brilliant film."]:
    back = shipped.decode(shipped.encode(s))
    print(f"{s!r}: {len(shipped.encode(s))} tokens, round trip exact: {back == s}")

# %% The prompt/response format: tokenized in two parts, so the response mask is exact
prompt, response = corpus[0]
p_ids, r_ids = shipped.encode_prompt(prompt), shipped.encode_response(response)
print("prompt ids  :", p_ids)
print("response ids:", r_ids, f"(ends with <|end|> = {shipped.end_id})")
