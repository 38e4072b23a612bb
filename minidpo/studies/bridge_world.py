"""The bridge's enumerable world: the microscope's tiny GPT (3 symbols and an end token, responses of at
most 3 tokens: 40 of them), a gold reward of its own, and preference pairs drawn from the reference.

Every policy of this world is a table of 40 probabilities that sum to 1, so its gold reward, its KL
to the reference, its distance to another policy and the mass it puts on responses no pair mentions
are sums over the 40 responses, not estimates.

The gold reward, in plain Python like `minidpo.world`'s and with the same shape in miniature. The
three symbols are words, "good" (+1), "fine" (+0.3) and "bad" (−1); a response scores

    the sentiment of each symbol the first time it is used
    − 0.5 for each symbol used again          (the toy world's no-repetition term)
    − 1.0 if the response does not end         (cut at the length limit: no full stop)
    − 2.0 if it is empty                       (the end token alone)

The best response is "good fine" (+1.3). Why this shape: most of the reward is a sum over the
symbols, so a model with shared parameters can guess an unseen response's reward from its parts; the
repetition and ending terms depend on the whole response, so it cannot guess all of it. Rung 3 of the
bridge asks exactly that of a GPT reward model.

The pairs: two responses drawn from the reference (two different ones), the winner drawn by
Bradley–Terry on the gold reward, P(y1 ≻ y2) = σ(r*(y1) − r*(y2)), as the toy world's pairs are.
Only the pairs inside the largest *strongly linked* set of responses are kept (every response in it
beats and is beaten by others through chains of pairs): there Bradley–Terry's maximum likelihood is
finite and unique up to one constant. A response that only ever wins would get reward +∞ under
Bradley–Terry and under DPO alike (Azar et al. 2023's point about deterministic preferences): that
is another condition than the ones the bridge isolates, so its pairs are set aside for every rung.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .microscope import END, all_responses, exact_logps, reference_model

DT = torch.float64
WORDS = ("good", "fine", "bad")
SENTIMENT = (1.0, 0.3, -1.0)
PENALTY_REPEAT, PENALTY_NO_END, PENALTY_EMPTY = 0.5, 1.0, 2.0


def gold_reward(response: list[int]) -> float:
    """r*(y) of one response (token ids; END = the end token). See the module docstring."""
    if response == [END]:
        return -PENALTY_EMPTY
    score, used = 0.0, set()
    for token in response:
        if token == END:
            break
        score += -PENALTY_REPEAT if token in used else SENTIMENT[token]
        used.add(token)
    return score - (PENALTY_NO_END if response[-1] != END else 0.0)


def words(response: list[int]) -> str:
    """A response as text: "good fine ." (the end token is the full stop)."""
    return " ".join("." if t == END else WORDS[t] for t in response)


def gold_table() -> torch.Tensor:
    """r*(y) of every response, in `all_responses()` order, (40,)."""
    return torch.tensor([gold_reward(y) for y in all_responses()], dtype=DT)


# --- pairs --------------------------------------------------------------------------------------------
def draw_pairs(ref_logp: torch.Tensor, gold: torch.Tensor, n: int, seed: int) -> list[tuple[int, int]]:
    """n pairs (winner, loser) of response indices: two different responses drawn from the
    reference, the winner by Bradley–Terry on the gold reward."""
    g = torch.Generator().manual_seed(seed)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n:
        a, b = torch.multinomial(ref_logp.exp(), 2, replacement=True, generator=g).tolist()
        if a == b:
            continue
        a_wins = torch.rand((), generator=g, dtype=DT) < torch.sigmoid(gold[a] - gold[b])
        pairs.append((a, b) if a_wins else (b, a))
    return pairs


def strongly_linked(pairs: list[tuple[int, int]], n: int) -> list[int]:
    """The largest set of responses in which every one reaches every other along "beats" edges
    (a strongly connected component of the win graph), sorted."""
    reach = [[i == j for j in range(n)] for i in range(n)]
    for w, l in pairs:
        reach[w][l] = True
    for k in range(n):  # transitive closure (n = 40: instant)
        for i in range(n):
            if reach[i][k]:
                reach[i] = [a or b for a, b in zip(reach[i], reach[k])]
    groups = {tuple(j for j in range(n) if reach[i][j] and reach[j][i]) for i in range(n)}
    return list(max(groups, key=len))


@dataclass
class World:
    """One seed's world: the reference (a tiny GPT), its exact log-probs, the gold reward, the kept
    pairs (indices into `all_responses()`), the responses they link and those they do not."""
    seed: int
    reference: object
    ref_logp: torch.Tensor
    gold: torch.Tensor
    pairs: list[tuple[int, int]]
    drawn: int
    linked: list[int]
    unlinked: list[int]

    @property
    def winners(self) -> torch.Tensor:
        return torch.tensor([w for w, _ in self.pairs])

    @property
    def losers(self) -> torch.Tensor:
        return torch.tensor([l for _, l in self.pairs])


@lru_cache(maxsize=None)
def reference(seed: int = 0, steps: int = 200) -> tuple:
    """The microscope's reference GPT and its exact log-probs, built once per process (every seed's
    world shares it; no rung trains it in place: each copies it)."""
    ref = reference_model(seed, steps=steps)
    return ref, exact_logps(ref).detach()


def make_world(seed: int, n_pairs: int, reference_seed: int = 0, reference_steps: int = 200) -> World:
    """The reference is the same for every seed (the toy world's SFT model is too); the seed draws
    the pairs and their labels."""
    ref, ref_logp = reference(reference_seed, reference_steps)
    gold = gold_table()
    drawn = draw_pairs(ref_logp, gold, n_pairs, seed)
    linked = strongly_linked(drawn, len(gold))
    keep = set(linked)
    pairs = [(w, l) for w, l in drawn if w in keep and l in keep]
    return World(seed, ref, ref_logp, gold, pairs, len(drawn), linked,
                 [i for i in range(len(gold)) if i not in keep])
