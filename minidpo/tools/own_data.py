"""Data off the toy, made here: dialogues laid out as Anthropic's HH-RLHF ships them, and a tiny GPT-2.

`python -m minidpo.tools.own_data` rewrites what lesson 22 imports (small, shipped in data/), the
same bytes from the same seed (tests/interop/test_own_data.py regenerates them and compares):
  data/hh_train.jsonl, data/hh_val.jsonl   film-talk dialogues in HH's layout, our own sentences. The
                                          chosen reply answers the question asked about the film
                                          asked; the rejected one is one of seven kinds of worse reply
                                          (`REJECTED_KINDS`), each composed from parts, so no two are
                                          alike; its kind is kept in the key "rejected_kind" (a key
                                          HH does not have: readers ignore it, lesson 22 reads it).
                                          Held-out films in hh_val.jsonl, none of its replies in
                                          hh_train.jsonl.
  data/tiny_gpt2/                          a GPT-2-shaped folder (config.json, model.safetensors,
                                          vocab.json + merges.txt ...) with GPT-2's regex and end
                                          token: its merges and weights learnt here on FILM TEXT
                                          (`pretraining_text`: helpful dialogues about films and the
                                          toy world's reviews), in which no reply of either file and
                                          no worse reply of any kind is an assistant turn. So the base
                                          model knows the talk, and has read neither side of any pair;
                                          `pretraining.json` beside the weights says how it was made.
`hh_pairs(n, seed, turns)` also feeds the reading benchmark (tools/data_bench.py) its 160,000 pairs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import world
from ..chat import GENERATION_PROMPT


@dataclass(frozen=True)
class Topic:
    ask: tuple     # a first question about film {t}
    follow: tuple  # the same question later in the talk (the film is known)
    say: tuple     # an answer's main clause about film {s}
    more: tuple    # a second sentence that adds to it


TOPICS = {
    "acting": Topic(("How is the acting in {t}?", "Are the actors in {t} any good?", "Who gives the best performance in {t}?"),
                    ("And the acting?", "What about the cast?", "Are the actors good?"),
                    ("the acting in {s} is {a}", "{s} has a {a} cast", "the lead in {s} gives a {a} performance",
                     "the actors in {s} are {a} together"),
                    ("The two leads carry the quiet scenes.", "Nobody overplays a moment.",
                     "Even the small parts are cast with care.")),
    "music": Topic(("What is the music like in {t}?", "Is the soundtrack of {t} good?"),
                   ("And the music?", "How is the soundtrack?"),
                   ("the music in {s} is {a}", "{s} has a {a} score", "the score of {s} is {a} and never too loud",
                    "the songs in {s} are {a}"),
                   ("The main theme returns at the end.", "It never drowns the dialogue.", "The quiet passages work best.")),
    "ending": Topic(("How does {t} end?", "Is the ending of {t} satisfying?"),
                    ("What about the ending?", "Does it end well?"),
                    ("the ending of {s} is {a}", "the final scene of {s} is {a}", "{s} ends on a {a} note",
                     "the last act of {s} is {a}"),
                    ("It stays with you for days.", "Nothing is left hanging.", "It is earned by everything before it.")),
    "length": Topic(("How long is {t}?", "Is {t} too long?"),
                    ("Is it long?", "How long does it run?"),
                    ("{s} runs about {n} minutes", "{s} is {n} minutes long", "at {n} minutes, {s} never drags"),
                    ("The time goes fast.", "The middle hour moves quickly.", "You will not check your watch.")),
    "scary": Topic(("Is {t} scary?", "Will {t} frighten my kids?"),
                   ("Is it scary?", "Are there frightening scenes?"),
                   ("{s} is tense rather than scary", "{s} has one {a} scare and no gore", "{s} is more {a} than frightening"),
                   ("Younger viewers may want a hand to hold once.", "There is no blood on screen.",
                    "The tension comes from the story, not from shocks.")),
    "family": Topic(("Is {t} good for a family evening?", "Can I watch {t} with my children?"),
                    ("Is it fine for children?", "Would my kids like it?"),
                    ("{s} suits children over {k}", "{s} is a {a} pick for a family evening", "{s} works for anyone over {k}"),
                    ("There is no bad language.", "The jokes land for adults too.", "Expect questions afterwards.")),
    "story": Topic(("What is the story of {t} like?", "Is the plot of {t} easy to follow?"),
                   ("And the story?", "Is the plot any good?"),
                   ("the story of {s} is {a}", "the plot of {s} is {a} and easy to follow", "{s} tells a {a} story"),
                   ("It takes its time in the first act.", "Every scene moves it forward.", "The twist is fair.")),
    "look": Topic(("How does {t} look?", "Is the camera work in {t} good?"),
                  ("How does it look?", "What about the camera work?"),
                  ("the camera work in {s} is {a}", "{s} looks {a} from start to finish", "the colours of {s} are {a}"),
                  ("Every frame is composed with care.", "The night scenes are the best.", "It deserves a big screen.")),
}
GENERAL_ASK = ("What did you think of {t}?", "Is {t} worth watching?", "Should I watch {t} tonight?",
               "My friend loved {t}. Will I?", "Can you tell me about {t}?")
VERDICT = ("{s} is worth it", "I would recommend {s}", "{s} is a {a} film", "{s} is worth an evening")
ADJ = ("warm", "sharp", "quiet", "bold", "moving", "clever", "gentle", "bright", "careful", "tender", "lively",
       "subtle", "striking", "patient", "playful", "fresh")
MINUTES = ("eighty-five", "ninety", "ninety-five", "a hundred", "a hundred and five", "a hundred and ten")
AGES = ("six", "eight", "ten", "twelve")
OPENERS = ("", "", "", "Sure. ", "Good question. ", "Happy to help. ", "Let me think. ")
CLOSERS = ("It is worth an evening.", "I would watch it again.", "Give it a try.", "I hope you enjoy it.",
           "Let me know what you think.")
HEDGES = ("It depends on what you like.", "Some people like it and some do not.", "Hard to say.",
          "It has its moments, I suppose.", "Everyone sees it differently.", "I would rather not judge.",
          "There is a lot to say and not much time.", "You may or may not enjoy it.")
BRUSH_OFFS = ("Why ask me?", "Look it up yourself.", "I have better things to do.", "Watch whatever you want.",
              "Ask someone else.", "Films are a waste of time.", "That is a boring question.", "Does it matter?")

# the seven kinds of worse reply, with how often each is drawn
REJECTED_KINDS = {
    "off_topic": 0.25,      # a good answer to another question (another topic)
    "wrong_film": 0.10,     # a good answer about another film
    "title_cut": 0.15,      # the film's title with one of its words dropped ("The Golden" for "The Golden Engine")
    "vague": 0.15,          # hedges that answer nothing
    "brush_off": 0.10,      # the user sent away
    "repetitive": 0.10,     # one clause said three times
    "same_start": 0.15,     # the chosen reply's first sentence, then it turns away
}


def _finish(text: str) -> str:
    """Articles agree with the next word; the first letter and each sentence's first letter are capitals."""
    text = re.sub(r"\ba ([aeiou])", r"an \1", text)
    return re.sub(r"(^|[.?!] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def _clause(rng: random.Random, pattern: str, subject: str) -> str:
    return pattern.format(s=subject, a=rng.choice(ADJ), n=rng.choice(MINUTES), k=rng.choice(AGES))


def answer(rng: random.Random, topic: str | None, subject: str) -> str:
    """A helpful reply about `subject` (a title, or "the film" later in a talk): a main clause on the
    topic asked (None: a verdict, then one topic), maybe a second sentence, maybe a closing one."""
    if topic is None:
        verdict = _clause(rng, rng.choice(VERDICT), subject)
        said = f"{verdict}: {_clause(rng, rng.choice(TOPICS[rng.choice(list(TOPICS))].say), 'it')}."
        said = said.replace(" in it ", " ").replace(" of it ", " ")
        return _finish(rng.choice(OPENERS) + said + (" " + rng.choice(CLOSERS) if rng.random() < 0.4 else ""))
    t = TOPICS[topic]
    said = _clause(rng, rng.choice(t.say), subject) + "."
    if rng.random() < 0.6:
        said += " " + rng.choice(t.more)
    if rng.random() < 0.4:
        said += " " + rng.choice(CLOSERS)
    return _finish(rng.choice(OPENERS) + said)


def worse_reply(rng: random.Random, kind: str, topic: str | None, subject: str, title: str, chosen: str,
                titles: list[str]) -> str:
    """A worse reply of `kind` (REJECTED_KINDS) to the question `topic` about `subject`."""
    if kind == "off_topic":
        return answer(rng, rng.choice([k for k in TOPICS if k != topic]), subject)
    if kind == "wrong_film":
        return answer(rng, topic, rng.choice([t for t in titles if t != title]))
    if kind == "title_cut":  # (only drawn where the reply names the film: see `hh_pair`)
        words, drop = title.split(), rng.choice([1, 2])
        return answer(rng, topic, " ".join(w for i, w in enumerate(words) if i != drop))
    if kind == "vague":
        return " ".join(rng.sample(HEDGES, rng.choice([1, 2, 2])))
    if kind == "brush_off":
        return rng.choice(OPENERS[:4]) + " ".join(rng.sample(BRUSH_OFFS, rng.choice([1, 2])))
    if kind == "repetitive":
        t = TOPICS[topic or rng.choice(list(TOPICS))]
        clause = _clause(rng, rng.choice(t.say), subject)
        return _finish(", ".join([clause] * 3) + ".")
    if kind == "same_start":  # the chosen reply's opening and first sentence, then it turns away
        first = sentences(chosen)[:2 if chosen.startswith(OPENERS[3:]) else 1]
        return " ".join(first + [rng.choice(BRUSH_OFFS + HEDGES)])
    raise ValueError(f"unknown kind of rejected reply {kind!r}")


def hh_pair(rng: random.Random, titles: list[str], turns=(1, 3)) -> dict:
    """One line in HH-RLHF's layout: the same dialogue in chosen and rejected, then the helpful reply
    (chosen) or a worse one (rejected, of a kind drawn from REJECTED_KINDS, named in "rejected_kind")."""
    title = rng.choice(titles)
    topics = list(TOPICS)
    topic = None if rng.random() < 0.3 else rng.choice(topics)
    talk = "\n\nHuman: " + rng.choice(GENERAL_ASK if topic is None else TOPICS[topic].ask).format(t=title)
    subject = title
    for _ in range(rng.randint(*turns) - 1):
        talk += f"{GENERATION_PROMPT} {answer(rng, topic, subject)}"
        topic = rng.choice([k for k in topics if k != topic])
        talk += "\n\nHuman: " + rng.choice(TOPICS[topic].follow)
        subject = "the film"
    chosen = answer(rng, topic, subject)
    kind = rng.choices(list(REJECTED_KINDS), weights=list(REJECTED_KINDS.values()))[0]
    if kind == "title_cut" and subject != title:
        kind = "wrong_film"  # no title in a later reply to cut
    rejected = worse_reply(rng, kind, topic, subject, title, chosen, titles)
    while rejected == chosen:  # (an off-topic or wrong-film draw can, rarely, say the same: draw again)
        rejected = worse_reply(rng, kind, topic, subject, title, chosen, titles)
    return {"chosen": f"{talk}{GENERATION_PROMPT} {chosen}", "rejected": f"{talk}{GENERATION_PROMPT} {rejected}",
            "rejected_kind": kind}


def hh_pairs(n: int, seed: int = 0, turns=(1, 3), titles: list[str] | None = None, avoid: set | None = None) -> list[dict]:
    """n lines from one seeded stream; a line whose chosen or rejected reply is in `avoid` (replies
    another file holds) is drawn again."""
    rng = random.Random(seed)
    titles = titles or world.TITLES
    out = []
    while len(out) < n:
        line = hh_pair(rng, titles, turns)
        if avoid and not avoid.isdisjoint(replies(line)):
            continue
        out.append(line)
    return out


def replies(line: dict) -> tuple[str, str]:
    """(chosen reply, rejected reply) of an HH line: what follows the last assistant marker."""
    return tuple(line[k][line[k].rindex(GENERATION_PROMPT) + len(GENERATION_PROMPT) + 1:] for k in ("chosen", "rejected"))


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!:]) ", text) if s]


def film_talk(rng: random.Random, title: str, turns: int, banned: set) -> str | None:
    """A dialogue about `title` in HH's layout where every assistant turn is helpful (`answer`), or
    None when an answer would be one of the replies in `banned`."""
    topic = None if rng.random() < 0.3 else rng.choice(list(TOPICS))
    talk, subject = "\n\nHuman: " + rng.choice(GENERAL_ASK if topic is None else TOPICS[topic].ask).format(t=title), title
    for turn in range(turns):
        said = answer(rng, topic, subject)
        if said in banned:
            return None
        talk += f"{GENERATION_PROMPT} {said}"
        if turn < turns - 1:
            topic, subject = rng.choice([k for k in TOPICS if k != topic]), "the film"
            talk += "\n\nHuman: " + rng.choice(TOPICS[topic].follow)
    return talk


def pretraining_text(n_talks: int, n_reviews: int, seed: int, banned: set) -> list[str]:
    """The base model's corpus, one document a line: film talk (dialogues on all 400 films whose
    every assistant turn is a helpful answer, drawn apart from the pair files) and the toy world's
    reviews. No assistant turn is a reply in `banned` (the files' replies, chosen and rejected), and
    none is a worse reply of any kind (no hedge, brush-off, repeated clause, cut title or answer to
    another question): the base model has read neither side of any pair."""
    rng = random.Random(seed)
    docs = []
    while len(docs) < n_talks:
        talk = film_talk(rng, rng.choice(world.TITLES), rng.randint(1, 3), banned)
        if talk is not None:
            docs.append(talk)
    docs += [f"{world.title_of(p)}. {r}" for p, r in world.make_corpus(n_reviews, seed=seed, titles=world.TITLES)]
    rng.shuffle(docs)
    return docs


def write_jsonl(path, rows) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PRETRAIN = dict(merges=300, steps=800, batch_size=32, lr=3e-3, warmup=30, n_layer=2, n_head=2, n_embd=64, block_size=256)


def tiny_gpt2(folder, texts: list[str], seed: int = 0, **settings) -> dict:
    """A GPT-2-shaped folder learnt on `texts`: our BPE merges served with GPT-2's regex and its one
    end token, and a small GPT trained as a plain language model on the texts. Returns its record
    (settings, the texts' hash, the last losses), which is also written as pretraining.json."""
    from ..checkpoint import write_json
    from ..data import collate
    from ..interop.gpt2 import export_gpt2
    from ..model import GPT, GPTConfig
    from ..tokenizer import Tokenizer, train_bpe
    from ..training import lr_at, make_optimizer, set_lr
    s = {**PRETRAIN, **settings}
    torch.manual_seed(seed)
    tok = Tokenizer(train_bpe("\n".join(texts), s["merges"]), name="tiny-gpt2", kind="gpt2")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=s["block_size"], n_layer=s["n_layer"],
                          n_head=s["n_head"], n_embd=s["n_embd"], gelu="tanh"))
    rows = [(ids, [True] * len(ids)) for ids in (tok.encode(t)[:s["block_size"] - 1] + [tok.end_id] for t in texts)]
    opt, rng, losses = make_optimizer(model, s["lr"], 0.1), random.Random(seed), []
    for step in range(s["steps"]):
        set_lr(opt, lr_at(step, s["steps"], s["lr"], s["warmup"]))
        ids, _ = collate(rng.sample(rows, s["batch_size"]), tok.end_id)
        _, loss = model(ids[:, :-1], ids[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    folder = Path(folder)
    export_gpt2(model.eval(), folder, tok)
    record = {"made_by": "python -m minidpo.tools.own_data", "seed": seed, "settings": s,
              "pretraining_text": {"documents": len(texts), "sha256": sha256("\n".join(texts).encode("utf-8"))},
              "threads": torch.get_num_threads(), "parameters": model.num_params(),
              "loss_last_50_steps": sum(losses[-50:]) / 50}
    write_json(folder / "pretraining.json", record)
    return record


PRETRAIN_THREADS = 2
SIZES = dict(train=400, val=200, talks=3000, reviews=1000)


def make_files(seed: int = 0) -> dict:
    """The pair files' lines and the pretraining text, all from `seed` (no model trained)."""
    train_titles, heldout_titles = world.split_titles()
    train = hh_pairs(SIZES["train"], seed, titles=train_titles)
    val = hh_pairs(SIZES["val"], seed + 1, titles=heldout_titles, avoid={r for line in train for r in replies(line)})
    banned = {r for line in train + val for r in replies(line)}
    text = pretraining_text(SIZES["talks"], SIZES["reviews"], seed + 2, banned)
    return {"train": train, "val": val, "text": text}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "data"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(PRETRAIN_THREADS)  # (another thread count rounds sums otherwise: other bits)
    files = make_files(args.seed)
    write_jsonl(out / "hh_train.jsonl", files["train"])
    write_jsonl(out / "hh_val.jsonl", files["val"])
    record = tiny_gpt2(out / "tiny_gpt2", files["text"], seed=args.seed)
    print(f"wrote hh_train.jsonl ({len(files['train'])} pairs), hh_val.jsonl ({len(files['val'])}) and tiny_gpt2/ "
          f"({record['parameters']} parameters, pretrained on {len(files['text'])} documents of film text, last loss "
          f"{record['loss_last_50_steps']:.3f}) in {out.name}/")


if __name__ == "__main__":
    main()
