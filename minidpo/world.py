"""A toy world of tiny film reviews with a known gold reward.

This is the miniature of the DPO paper's IMDb "controlled sentiment" task. A prompt names a film
("Review: The Silent Harbor"); a response is one to three short sentences built from a small
grammar and lexicon. Because we wrote the world, any text can be scored exactly:

    r*(x, y) = sum of the sentiment of each *fluent, new* sentence
               - 1.0 per sentence the grammar cannot produce (broken, off-topic title, ...)
               - 1.0 per sentence that repeats an earlier one word for word
               - 0.5 per sentiment word already used in an earlier sentence (that sentence scores 0)
               - 1.0 per sentence beyond the third
               - 1.0 if the text does not end with a full stop
               - 2.0 if the response is empty

A sentence's sentiment is the score of its one sentiment word (adjectives and verbs in [-1, 1]),
times 1.5 when the intensifier "very" precedes the adjective. The best possible response is three
sentences with three different strongly positive words (about 4.2); the SFT corpus mixes positive,
negative, neutral and mixed reviews so its rewards spread around 0.

`is_fluent(prompt, response)` is the world's grammar check: every sentence is one the grammar can
produce (about this film), none is repeated word for word, there are 1-3 of them and the text ends
with a full stop. Reusing a sentiment word is grammatical, so it is not a fluency failure; it is a
style penalty in the reward (a no-repetition term). Fluency is reported beside every win rate
because preference tuning can trade fluency for reward.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

# --- lexicon -----------------------------------------------------------------------------------
ADJECTIVES = {
    "brilliant": 1.0, "wonderful": 1.0, "superb": 1.0, "great": 0.8, "moving": 0.8,
    "good": 0.6, "charming": 0.6, "fine": 0.3, "decent": 0.3,
    "long": 0.0, "quiet": 0.0, "ordinary": 0.0, "strange": 0.0,
    "slow": -0.3, "dull": -0.6, "weak": -0.6, "bad": -0.8, "boring": -0.8,
    "awful": -1.0, "terrible": -1.0, "dreadful": -1.0,
}
VERBS = {"loved": 1.0, "adored": 1.0, "enjoyed": 0.8, "liked": 0.6, "watched": 0.0,
         "disliked": -0.6, "hated": -1.0}
ASPECTS = ["acting", "plot", "music", "ending", "story", "cast", "script", "camera work"]
NOUNS = ["film", "movie", "story"]
DAYS = ["Monday", "Tuesday", "Friday", "Sunday"]
INTENSIFIER, INTENSITY = "very", 1.5

TITLE_ADJ = ["Silent", "Broken", "Golden", "Hidden", "Last", "Crimson", "Frozen", "Distant",
             "Wild", "Lonely", "Electric", "Secret", "Burning", "Quiet", "Iron", "Paper",
             "Midnight", "Velvet", "Hollow", "Bright"]
TITLE_NOUN = ["Harbor", "Garden", "Compass", "River", "Kingdom", "Letter", "Mountain", "Mirror",
              "Station", "Island", "Engine", "Forest", "Promise", "Lantern", "Bridge", "Voyage",
              "Window", "Circus", "Orchard", "Signal"]
TITLES = [f"The {a} {n}" for a in TITLE_ADJ for n in TITLE_NOUN]  # 400 films
N_HELDOUT_TITLES = 50  # the last 50 (after a fixed shuffle) are never seen in training

PROMPT_PREFIX = "Review: "

PENALTY_BROKEN, PENALTY_REPEAT, PENALTY_REUSED_WORD = 1.0, 1.0, 0.5
PENALTY_TOO_LONG, PENALTY_NO_END, PENALTY_EMPTY = 1.0, 1.0, 2.0
MAX_SENTENCES = 3


def make_prompt(title: str) -> str:
    return PROMPT_PREFIX + title


def title_of(prompt: str) -> str | None:
    return prompt[len(PROMPT_PREFIX):] if prompt.startswith(PROMPT_PREFIX) else None


def split_titles(seed: int = 0) -> tuple[list[str], list[str]]:
    """(train titles, held-out titles): a fixed shuffle, so held-out films are never trained on."""
    titles = TITLES[:]
    random.Random(seed).shuffle(titles)
    return titles[:-N_HELDOUT_TITLES], titles[-N_HELDOUT_TITLES:]


# --- grammar: each template has one sentiment slot (or none) ---------------------------------------
def _alt(words) -> str:
    return "(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


_ADJ = f"(?:({INTENSIFIER}) )?{_alt(ADJECTIVES)}"
TEMPLATES = {  # name -> regex over one sentence; group "adj"/"verb" holds the sentiment word
    "aspect_was": re.compile(rf"The {_alt(ASPECTS)} was {_ADJ}\."),
    "aspect_felt": re.compile(rf"The {_alt(ASPECTS)} felt {_ADJ}\."),
    "verb_this": re.compile(rf"I {_alt(VERBS)} this {_alt(NOUNS)}\."),
    "title_was": re.compile(rf"(?P<title>The [A-Z][a-z]+ [A-Z][a-z]+) was an? {_ADJ} {_alt(NOUNS)}\."),
    "saw_on": re.compile(rf"I saw it on {_alt(DAYS)}\."),
}


@dataclass
class SentenceScore:
    fluent: bool
    sentiment: float
    word: str | None


def score_sentence(sentence: str, title: str | None) -> SentenceScore:
    """Parse one sentence against the grammar; return its sentiment and sentiment word."""
    for name, pattern in TEMPLATES.items():
        m = pattern.fullmatch(sentence)
        if not m:
            continue
        if name == "title_was" and m.group("title") != title:
            return SentenceScore(False, 0.0, None)  # talks about another film: off-topic
        if name == "saw_on":
            return SentenceScore(True, 0.0, None)
        if name == "verb_this":
            word = m.group(1)
            return SentenceScore(True, VERBS[word], word)
        groups = [g for g in m.groups() if g is not None]
        very = INTENSIFIER in groups
        word = next(g for g in groups if g in ADJECTIVES)
        return SentenceScore(True, ADJECTIVES[word] * (INTENSITY if very else 1.0), word)
    return SentenceScore(False, 0.0, None)


_SENTENCE_SPLIT = re.compile(r"(?<=\.) ")


def reward_breakdown(prompt: str, response: str) -> dict:
    """Every term of the gold reward, so a learner can see why a text scores what it scores."""
    title = title_of(prompt)
    text = response.strip()
    out = {"sentiment": 0.0, "broken": 0, "repeated": 0, "reused_word": 0, "too_long": 0,
           "no_end": 0, "empty": 0}
    if not text:
        out["empty"] = 1
    else:
        out["no_end"] = int(not text.endswith("."))
        seen_sentences, seen_words = set(), set()
        for i, sentence in enumerate(_SENTENCE_SPLIT.split(text)):
            if i >= MAX_SENTENCES:
                out["too_long"] += 1
                continue
            if sentence in seen_sentences:
                out["repeated"] += 1
                continue
            seen_sentences.add(sentence)
            s = score_sentence(sentence, title)
            if not s.fluent:
                out["broken"] += 1
            elif s.word is not None and s.word in seen_words:
                out["reused_word"] += 1
            else:
                out["sentiment"] += s.sentiment
                if s.word is not None:
                    seen_words.add(s.word)
    out["reward"] = (out["sentiment"] - PENALTY_BROKEN * out["broken"]
                     - PENALTY_REPEAT * out["repeated"] - PENALTY_REUSED_WORD * out["reused_word"]
                     - PENALTY_TOO_LONG * out["too_long"] - PENALTY_NO_END * out["no_end"]
                     - PENALTY_EMPTY * out["empty"])
    return out


def gold_reward(prompt: str, response: str) -> float:
    """r*(x, y): defined on ANY text, deterministic (see the module docstring for the formula)."""
    return reward_breakdown(prompt, response)["reward"]


GRAMMAR_FAILURES = ("broken", "repeated", "too_long", "no_end", "empty")


def fluent(breakdown: dict) -> bool:
    """The grammar check on a `reward_breakdown` (reusing a sentiment word is not a failure)."""
    return not any(breakdown[k] for k in GRAMMAR_FAILURES)


def is_fluent(prompt: str, response: str) -> bool:
    return fluent(reward_breakdown(prompt, response))


# --- the generator of the SFT corpus ---------------------------------------------------------------
MOODS = {  # mood -> probability of a positive / neutral / negative sentiment word per sentence
    "positive": (0.75, 0.2, 0.05), "negative": (0.05, 0.2, 0.75),
    "mixed": (0.45, 0.1, 0.45), "neutral": (0.15, 0.7, 0.15),
}


def _pick_word(rng: random.Random, lexicon: dict, mood: str, used: set) -> str:
    p_pos, p_neu, _ = MOODS[mood]
    u = rng.random()
    want = (lambda s: s > 0) if u < p_pos else (lambda s: s == 0) if u < p_pos + p_neu else (lambda s: s < 0)
    choices = [w for w, s in lexicon.items() if want(s) and w not in used]
    return rng.choice(choices or [w for w in lexicon if w not in used])


# the corpus's style (not the grammar's): these sentence kinds appear at most once in a review,
# and no aspect is discussed twice
ONCE_PER_REVIEW = ("verb_this", "title_was", "saw_on")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def sample_response(rng: random.Random, title: str) -> str:
    """One fluent review: 1-3 distinct sentences, no sentiment word used twice, each aspect and
    each of the ONCE_PER_REVIEW kinds at most once."""
    mood = rng.choice(list(MOODS))
    n = rng.choice([1, 2, 2, 3, 3])
    used, sentences, kinds, aspects = set(), [], [], set()
    while len(sentences) < n:
        kind = rng.choice(["aspect_was", "aspect_felt", "verb_this", "title_was", "saw_on"])
        if kind in kinds and kind in ONCE_PER_REVIEW:
            continue
        aspect = rng.choice(ASPECTS)
        if kind.startswith("aspect") and aspect in aspects:
            continue
        very = f"{INTENSIFIER} " if rng.random() < 0.2 else ""
        if kind == "verb_this":
            w = _pick_word(rng, VERBS, mood, used)
            s = f"I {w} this {rng.choice(NOUNS)}."
        elif kind == "saw_on":
            w, s = None, f"I saw it on {rng.choice(DAYS)}."
        else:
            w = _pick_word(rng, ADJECTIVES, mood, used)
            s = {"aspect_was": f"The {aspect} was {very}{w}.",
                 "aspect_felt": f"The {aspect} felt {very}{w}.",
                 "title_was": f"{title} was {_article(very + w)} {very}{w} {rng.choice(NOUNS)}."}[kind]
        if s in sentences:
            continue
        used.add(w)
        sentences.append(s)
        kinds.append(kind)
        if kind.startswith("aspect"):
            aspects.add(aspect)
    return " ".join(sentences)


def make_corpus(n: int, seed: int = 0, titles: list[str] | None = None) -> list[tuple[str, str]]:
    """n (prompt, response) examples over the given titles (default: the training titles)."""
    rng = random.Random(seed)
    titles = titles if titles is not None else split_titles()[0]
    return [(make_prompt(t), sample_response(rng, t)) for t in (rng.choice(titles) for _ in range(n))]
