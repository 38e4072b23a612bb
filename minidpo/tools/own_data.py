"""Data off the toy, made here: dialogues laid out as Anthropic's HH-RLHF ships them, and a tiny GPT-2.

`python -m minidpo.tools.own_data` rewrites what lesson 21 imports (small, shipped in data/):
  data/hh_train.jsonl, data/hh_val.jsonl   film-talk dialogues in HH's layout, our own sentences: the
                                          chosen reply helps, the rejected one brushes the user off;
  data/tiny_gpt2/                          a GPT-2-shaped folder (config.json, model.safetensors,
                                          vocab.json + merges.txt ...) with GPT-2's regex and end token,
                                          its merges and weights learnt here on those dialogues' text.
`hh_pairs(n, seed, turns)` also feeds the reading benchmark (tools/data_bench.py) its 160,000 pairs.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from .. import world
from ..chat import GENERATION_PROMPT

ASK = ["What did you think of {t}?", "Is {t} worth watching?", "Can you tell me about {t}?",
       "Should I watch {t} tonight?", "My friend loved {t}. Will I?", "How is the acting in {t}?",
       "Is {t} good for a family evening?", "What is the best thing about {t}?"]
FOLLOW = ["And the music?", "Is it long?", "What about the ending?", "Who would enjoy it most?",
          "Is it scary?", "Thanks. Anything similar?"]
GOOD = ["{t} is a {a} film with a {b} cast, and the ending is earned.",
        "Yes. {t} has {a} acting and a {b} story; it rewards an evening.",
        "I liked {t}: the script is {a} and the camera work is {b}.",
        "{t} is worth it if you enjoy {a} drama; the final scene is {b}.",
        "The acting in {t} is {a}, and the music is {b} without getting in the way."]
FOLLOW_GOOD = ["The music is {a} and never too loud.", "It runs just under two hours, and the time goes fast.",
               "The ending is {a} and stays with you.", "People who like {b} stories will enjoy it most.",
               "It is tense rather than scary.", "Try another {a} drama from the same year."]
BAD = ["Why ask me? Watch whatever you want.", "I have no idea and I do not care.",
       "Films are a waste of time.", "{t} is {t} is {t}.", "Ask someone else.",
       "The acting in {t} is fine I guess, whatever."]
ADJ = ["warm", "sharp", "quiet", "bold", "moving", "clever", "gentle", "bright", "careful", "tender"]


def _reply(rng, pool, title):
    return rng.choice(pool).format(t=title, a=rng.choice(ADJ), b=rng.choice(ADJ))


def hh_pair(rng: random.Random, titles: list[str], turns=(1, 2)) -> dict:
    """One line in HH-RLHF's layout: the same dialogue in chosen and rejected, then a helpful reply
    (chosen) or a dismissive one (rejected). One in four rejected replies begins as the chosen one
    does, the case where TRL's character split would cut inside the replies."""
    title = rng.choice(titles)
    talk = "\n\nHuman: " + rng.choice(ASK).format(t=title)
    for _ in range(rng.randint(*turns) - 1):
        talk += f"{GENERATION_PROMPT} {_reply(rng, GOOD, title)}\n\nHuman: {rng.choice(FOLLOW)}"
    pool = GOOD if talk.count("Human:") == 1 else FOLLOW_GOOD
    chosen = _reply(rng, pool, title)
    rejected = _reply(rng, BAD, title)
    if rng.random() < 0.25:  # same first words, then it goes wrong
        rejected = " ".join(chosen.split()[:3]) + " " + rng.choice(["whatever.", "I forget.", "not that I care."])
    return {"chosen": f"{talk}{GENERATION_PROMPT} {chosen}", "rejected": f"{talk}{GENERATION_PROMPT} {rejected}"}


def hh_pairs(n: int, seed: int = 0, turns=(1, 2), titles: list[str] | None = None) -> list[dict]:
    rng = random.Random(seed)
    titles = titles or world.TITLES
    return [hh_pair(rng, titles, turns) for _ in range(n)]


def write_jsonl(path, rows) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def tiny_gpt2(folder, texts: list[str], merges: int = 300, steps: int = 600, seed: int = 0) -> None:
    """A GPT-2-shaped folder learnt on `texts`: our BPE merges served with GPT-2's regex and its one
    end token, and a 2-layer GPT trained as a plain language model on the texts (so it speaks the
    dialogues' language, with no preference of its own between chosen and rejected replies)."""
    from ..data import collate
    from ..interop.gpt2 import export_gpt2
    from ..model import GPT, GPTConfig
    from ..tokenizer import Tokenizer, train_bpe
    from ..training import lr_at, make_optimizer, set_lr
    torch.manual_seed(seed)
    tok = Tokenizer(train_bpe("\n".join(texts), merges), name="tiny-gpt2", kind="gpt2")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=2, n_head=2, n_embd=64, gelu="tanh"))
    rows = [(ids, [True] * len(ids)) for ids in (tok.encode(t)[:255] + [tok.end_id] for t in texts)]
    opt, rng = make_optimizer(model, 3e-3, 0.1), random.Random(seed)
    for step in range(steps):
        set_lr(opt, lr_at(step, steps, 3e-3, 30))
        ids, _ = collate(rng.sample(rows, 32), tok.end_id)
        _, loss = model(ids[:, :-1], ids[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print(f"tiny GPT-2: {model.num_params()} parameters, last loss {loss.item():.3f}")
    export_gpt2(model.eval(), Path(folder), tok)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "data"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    train_titles, heldout_titles = world.split_titles()
    train, val = hh_pairs(400, args.seed, titles=train_titles), hh_pairs(80, args.seed + 1, titles=heldout_titles)
    write_jsonl(out / "hh_train.jsonl", train)
    write_jsonl(out / "hh_val.jsonl", val)
    texts = [p_[k] for p_ in train for k in ("chosen", "rejected")]
    tiny_gpt2(out / "tiny_gpt2", texts, seed=args.seed)
    print(f"wrote {out / 'hh_train.jsonl'} ({len(train)} pairs), hh_val.jsonl ({len(val)}), tiny_gpt2/")


if __name__ == "__main__":
    main()
