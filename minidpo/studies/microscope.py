"""The likelihood-displacement microscope: where does the probability go when DPO trains?

Part 1, on the run's own DPO policy and pairs: for each pair, the change of log π(y_w) and
log π(y_l) from the reference, DPO's gradient weight σ(−β·h), and CHES, the similarity of the two
responses in the model's hidden states (Razin et al. 2024, "Unintentional Unalignment"):

    CHES(x, y_w, y_l) = ⟨H(y_w), H(y_l)⟩ − ‖H(y_w)‖²,   H(y) = Σ_k h(x, y_<k)

(h: the final hidden state that predicts token k, here the reference's). Which pairs push the chosen
log-prob down, and are they the similar ones?

Part 2, exactly: a GPT with a vocabulary of 3 symbols plus an end token and responses of at most 3
tokens has 40 possible responses, so π(y|x) of every one is computed with the hand-written model,
and the probability mass that leaves the labelled responses for responses no label looked at is
measured, not estimated. It reproduces two published claims:
  - Azar et al. (2023): with deterministic preferences DPO drives π(y_l) to 0 whatever β is, while
    IPO's optimum keeps it bounded;
  - Xu et al. (2024): DPO can put probability on responses absent from the data, where the
    KL-regularised RL optimum π_ref·exp(r̂/β)/Z (with a reward fitted to the same pairs) does not.
and shows the remedies on the same pairs: an SFT (RPO) term, DPOP, and dropping the quarter of pairs
with the largest length-normalised CHES.
"""
from __future__ import annotations

import copy
import itertools
import math

import torch
import torch.nn.functional as F

from ..data import collate, row
from ..dpo import DPOConfig, pair_logps, pair_record
from ..losses import LOSSES
from ..model import GPT, GPTConfig, sequence_logps

# --- part 1: per pair, on the run's own policy ------------------------------------------------------------


@torch.no_grad()
def ches_scores(model, encoded_pairs, pad_id, batch_size: int = 128, normalised: bool = False) -> torch.Tensor:
    """CHES of each pair from `model`'s final hidden states at the positions that predict response
    tokens (Razin et al. 2024, Definition 2). `normalised=True`: their length-normalised CHES, the same
    with H(y) divided by the number of response tokens (a mean hidden state instead of a sum), so a
    long response does not win by length alone."""
    model.eval()
    out = []
    for i in range(0, len(encoded_pairs), batch_size):
        chunk = encoded_pairs[i:i + batch_size]
        rows = [c for c, _ in chunk] + [r for _, r in chunk]
        ids, mask = collate(rows, pad_id)
        hidden = model.hidden(ids[:, :-1])                        # (2B, T-1, C)
        summed = (hidden * mask[:, 1:].unsqueeze(-1)).sum(1)      # H(y) = Σ_k h(x, y_<k)
        if normalised:
            summed = summed / mask[:, 1:].sum(1, keepdim=True).clamp(min=1)
        w, l = summed[:len(chunk)], summed[len(chunk):]
        out.append((w * l).sum(-1) - (w * w).sum(-1))
    return torch.cat(out)


Z95 = 1.959964  # the two-sided 95 % quantile of the normal distribution


def correlation(x, y) -> dict:
    """Pearson's r of two per-pair measurements and its 95 % interval by Fisher's z (atanh r is
    near-normal with standard error 1/√(n − 3)); "no measurable correlation" when it covers 0."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    n = len(x)
    r = torch.corrcoef(torch.stack([x, y]))[0, 1].item()
    half = Z95 / math.sqrt(n - 3)
    low, high = math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)
    verdict = "positive" if low > 0 else "negative" if high < 0 else "no measurable correlation"
    return {"r": r, "low": low, "high": high, "n": n, "verdict": verdict}


def share_gap(a, b) -> dict:
    """Two shares (fractions of True) and their difference a − b with a 95 % normal interval."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    pa, pb = a.mean().item(), b.mean().item()
    half = Z95 * math.sqrt(pa * (1 - pa) / len(a) + pb * (1 - pb) / len(b))
    d = pa - pb
    return {"a": pa, "b": pb, "gap": d, "low": d - half, "high": d + half,
            "verdict": "above" if d - half > 0 else "below" if d + half < 0 else "no measurable difference"}


def displacement(policy, reference, encoded_pairs, pad_id, beta: float) -> dict:
    """Per pair: Δ log π(y_w), Δ log π(y_l) (policy − reference), the gradient weight σ(−β·h) of the
    trained policy, CHES and its length-normalised form, and the response lengths; then how the falls
    of log π(y_w) relate to each CHES (correlations with their intervals; the share of pairs whose
    log π(y_w) fell in the most and the least similar quarter)."""
    ref = pair_logps(reference, encoded_pairs, pad_id, average=False)
    with torch.no_grad():
        pol = torch.cat([torch.stack([(r := pair_record(policy.eval(), encoded_pairs[i:i + 128], pad_id, beta, False)).chosen_logps,
                                      r.rejected_logps], 1) for i in range(0, len(encoded_pairs), 128)])
    d_chosen, d_rejected = pol[:, 0] - ref[:, 0], pol[:, 1] - ref[:, 1]
    weight = torch.sigmoid(-beta * (d_chosen - d_rejected))
    lengths = torch.tensor([[sum(c[1]), sum(r[1])] for c, r in encoded_pairs], dtype=torch.float64)
    out = {"d_logp_chosen": d_chosen.tolist(), "d_logp_rejected": d_rejected.tolist(), "weight": weight.tolist(),
           "length_chosen": lengths[:, 0].tolist(), "length_rejected": lengths[:, 1].tolist()}
    down = d_chosen < 0
    out["chosen_down_frac"] = down.float().mean().item()
    out["corr_length_gap_d_chosen"] = correlation(lengths[:, 1] - lengths[:, 0], d_chosen)  # length alone
    for key, normalised in (("ches", False), ("ches_normalised", True)):
        ches = ches_scores(reference, encoded_pairs, pad_id, normalised=normalised)
        q = torch.quantile(ches.double(), torch.tensor([0.25, 0.75], dtype=torch.float64))
        most, least = down[ches >= q[1]], down[ches <= q[0]]
        out[key] = ches.tolist()
        out[f"corr_{key}_d_chosen"] = correlation(ches, d_chosen)
        out[f"{key}_quarters"] = share_gap(most, least)  # log π(y_w) fell: largest-CHES quarter − smallest
        out[f"corr_{key}_length_gap"] = correlation(ches, lengths[:, 1] - lengths[:, 0])
    return out


# --- part 2: exactly, on an enumerable GPT ------------------------------------------------------------------
SYMBOLS, MAX_LEN = 3, 3          # tokens 0..2 are symbols, 3 the end token
END = PROMPT = SYMBOLS           # the prompt is the end token alone (a start-of-text marker), so the
                                 # vocabulary is exactly what the sampler can emit: 40 responses


def all_responses(symbols: int = SYMBOLS, max_len: int = MAX_LEN) -> list[list[int]]:
    """Every response the sampler can produce: up to max_len − 1 symbols then the end token, or
    max_len symbols cut at the length limit (no end token)."""
    out = [list(s) + [END] for n in range(max_len) for s in itertools.product(range(symbols), repeat=n)]
    return out + [list(s) for s in itertools.product(range(symbols), repeat=max_len)]


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=SYMBOLS + 1, block_size=8, n_layer=2, n_head=2, n_embd=32)).double()


def exact_logps(model, responses=None) -> torch.Tensor:
    """log π(y|x) of every response, for the one prompt; they must sum (in probability) to 1."""
    responses = responses or all_responses()
    ids, mask = collate([row([PROMPT], r) for r in responses], END)
    return sequence_logps(model, ids, mask).logps


def exact_kl(logp, ref_logp) -> float:
    return (logp.exp() * (logp - ref_logp)).sum().item()


@torch.no_grad()
def sampled_kl(model, ref, n: int, seed: int) -> tuple[float, float]:
    """KL(π ‖ π_ref) estimated from n samples of π (mean of log π/π_ref) and its standard error."""
    g = torch.Generator().manual_seed(seed)
    samples = model.generate([[PROMPT]] * n, MAX_LEN, temperature=1.0, stop_id=END, generator=g)
    ids, mask = collate([row([PROMPT], s) for s in samples], END)
    ratio = sequence_logps(model, ids, mask).logps - sequence_logps(ref, ids, mask).logps
    return ratio.mean().item(), (ratio.std() / math.sqrt(n)).item()


def reference_model(seed: int = 0, steps: int = 200) -> GPT:
    """A reference that is not uniform: the tiny GPT fitted (SFT) to a fixed random distribution
    over the responses, so some responses are likely and some rare."""
    model = tiny_gpt(seed)
    g = torch.Generator().manual_seed(seed)
    target = torch.softmax(2 * torch.randn(len(all_responses()), generator=g, dtype=torch.float64), 0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):  # minimise KL(target ‖ π): cross-entropy against the target distribution
        loss = -(target * exact_logps(model)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def train_pairs(ref: GPT, pairs: list[tuple[int, int]], loss_type: str, beta: float, steps: int, lr: float = 0.01,
                **loss_args) -> tuple[GPT, list[dict]]:
    """The tiny GPT trained from `ref` with a registered loss on fixed pairs (indices into
    all_responses(), winner first), full batch; the exact distribution is recorded along the way."""
    import copy
    responses = all_responses()
    policy = copy.deepcopy(ref).train()
    rows = [(row([PROMPT], responses[w]), row([PROMPT], responses[l])) for w, l in pairs]
    ref_logps = pair_logps(ref, rows, END, average=False)
    cfg = DPOConfig(beta=beta, loss_type=loss_type, loss_args=loss_args)
    loss_fn, args = cfg.loss()
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    trace = []
    for step in range(steps + 1):
        if step in _trace_steps(steps):
            with torch.no_grad():
                trace.append({"step": step, "probs": exact_logps(policy).exp().tolist()})
        if step == steps:
            break
        record = pair_record(policy, rows, END, beta, False, ref_logps)
        loss = loss_fn(record, **args).losses.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy.eval(), trace


def _trace_steps(steps: int) -> set[int]:
    return {0, steps} | {int(steps * f) for f in (0.01, 0.03, 0.1, 0.3)}


def fitted_reward(pairs, n_responses: int, l2: float = 1e-3) -> torch.Tensor:
    """Bradley–Terry maximum likelihood of a tabular reward on the pairs, with a small L2 term of
    weight `l2`. The likelihood leaves free what no pair decides: the reward of a response in no pair,
    a constant per group of linked responses, and, when the labels are a consistent order, the size
    of every gap (the likelihood keeps rising as the gaps grow). The L2 term sets those: unlabelled
    responses at r̂ = 0, the labelled ones centred near 0, gaps finite — a convention."""
    r = torch.zeros(n_responses, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([a for a, _ in pairs])
    l = torch.tensor([b for _, b in pairs])
    opt = torch.optim.LBFGS([r], lr=1, max_iter=500, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -F.logsigmoid(r[w] - r[l]).mean() + l2 * (r ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return r.detach()


_STUDIES: dict = {}
STUDY_LOSSES = ("sigmoid", "ipo", "rpo", "dpop")  # the losses the enumerable study trains with


def enumerable_study(seed: int = 0, fast: bool = False) -> dict:
    """Part 2 of the module docstring; every number exact (float64). Deterministic, so a process
    computes it once for each seed, setting and source of the losses it uses (a lesson and a test
    share it), and returns a copy."""
    key = (seed, fast, tuple(LOSSES[name].fingerprint() for name in STUDY_LOSSES))
    if key not in _STUDIES:
        _STUDIES[key] = _enumerable_study(seed, fast)
    return copy.deepcopy(_STUDIES[key])


def _enumerable_study(seed: int, fast: bool) -> dict:
    responses = all_responses()
    ref = reference_model(seed, steps=100 if fast else 200)
    ref_logp = exact_logps(ref).detach()
    steps = 150 if fast else 600
    result = {"n_responses": len(responses), "ref_total_probability": ref_logp.exp().sum().item()}

    # the exact KL against its sampled estimate, on a policy moved away from the reference
    moved, _ = train_pairs(ref, [(0, 5)], "sigmoid", beta=0.5, steps=50)
    kl = exact_kl(exact_logps(moved).detach(), ref_logp)
    est, se = sampled_kl(moved, ref, 4000, seed)
    result["kl"] = {"exact": kl, "sampled": est, "standard_error": se, "policy_total_probability":
                    exact_logps(moved).exp().sum().item()}

    # Azar et al.: one always-won pair (the reference's two likeliest responses, the likelier one
    # losing); π(y_l) under DPO for several β, and under IPO
    loser, winner = torch.argsort(ref_logp, descending=True)[:2].tolist()
    claims = {}
    for loss_type, betas in (("sigmoid", (0.1, 1.0, 10.0)), ("ipo", (0.1, 1.0, 10.0))):
        for beta in betas:
            _, trace = train_pairs(ref, [(winner, loser)], loss_type, beta, steps)
            claims[f"{loss_type}_beta{beta}"] = [{"step": t["step"], "p_winner": t["probs"][winner],
                                                  "p_loser": t["probs"][loser]} for t in trace]
    result["deterministic_pair"] = {"winner": responses[winner], "loser": responses[loser],
                                    "ref_p_loser": ref_logp.exp()[loser].item(),
                                    "ref_p_winner": ref_logp.exp()[winner].item(), "steps": steps, "traces": claims}

    # Xu et al.: pairs over a few responses; the mass on the others, DPO vs the RL optimum
    g = torch.Generator().manual_seed(seed + 1)
    labelled = torch.randperm(len(responses), generator=g)[:6].tolist()
    true_reward = torch.randn(len(responses), generator=g, dtype=torch.float64)
    pairs = [(a, b) if true_reward[a] > true_reward[b] else (b, a)
             for a, b in itertools.combinations(labelled, 2)]
    unlabelled = [i for i in range(len(responses)) if i not in labelled]
    beta = 0.5
    r_hat = fitted_reward(pairs, len(responses))
    rl = F.log_softmax(ref_logp + r_hat / beta, 0)  # the KL-regularised RL optimum on r̂ (DPO eq. 4)
    mass = lambda logp: logp.exp()[unlabelled].sum().item()
    rl_weaker_l2 = F.log_softmax(ref_logp + fitted_reward(pairs, len(responses), l2=1e-4) / beta, 0)
    ood = {"labelled": labelled, "reference": mass(ref_logp), "rl_optimum": mass(rl),
           "rl optimum, L2 weight 1e-4 instead of 1e-3": mass(rl_weaker_l2),
           "r_hat_labelled": r_hat[labelled].tolist(), "ref_labelled": ref_logp.exp()[labelled].tolist(), "beta": beta}
    for name, loss_type, args in (("dpo", "sigmoid", {}), ("rpo (SFT term)", "rpo", {"alpha": 1.0}),
                                  ("dpop", "dpop", {"lam": 50.0})):
        policy, _ = train_pairs(ref, pairs, loss_type, beta, steps, **args)
        logp = exact_logps(policy).detach()
        ood[name] = mass(logp)
        ood[f"{name}: max unlabelled probability gain"] = (logp.exp() - ref_logp.exp())[unlabelled].max().item()
    # dropping the quarter of pairs with the largest length-normalised CHES (from the reference's hidden
    # states): the pairs Razin et al. expect to displace the chosen response most
    rows = [(row([PROMPT], responses[w]), row([PROMPT], responses[l])) for w, l in pairs]
    ches = ches_scores(ref, rows, END, normalised=True)
    keep = [p for p, c in zip(pairs, ches.tolist()) if c < torch.quantile(ches, 0.75).item()]
    policy, _ = train_pairs(ref, keep, "sigmoid", beta, steps)
    ood["dpo without the quarter of largest normalised CHES"] = mass(exact_logps(policy).detach())
    result["out_of_data"] = ood
    return result


# --- the study --------------------------------------------------------------------------------------------
def run_microscope(run) -> dict:
    result = run.study("microscope", lambda: _microscope(run))
    print_microscope(result)  # also when reused
    return result


def _microscope(run) -> None:
    from ..checkpoint import read_json, write_json
    from ..preferences import encode_pairs, read_preferences
    beta = read_json(run.path("dpo_metrics.json"))["config"]["beta"]
    sft, dpo = run.load_policy("sft.pt"), run.load_policy("dpo.pt")
    pairs, _ = read_preferences(run.path("prefs_train.jsonl"))
    encoded, _ = encode_pairs(run.tok, pairs[:200 if run.fast else 1000], sft.config.block_size)
    result = {"pairs": displacement(dpo, sft, encoded, run.tok.end_id, beta), "beta": beta,
              "enumerable": enumerable_study(run.seed, run.fast)}
    write_json(run.out / "microscope" / "microscope.json", result)


def print_microscope(result: dict) -> None:
    p = result["pairs"]
    print(f"run's DPO: log π(y_w) fell in {p['chosen_down_frac']:.1%} of {len(p['ches'])} pairs")
    for key, words in (("ches", "CHES"), ("ches_normalised", "length-normalised CHES")):
        c, q = p[f"corr_{key}_d_chosen"], p[f"{key}_quarters"]
        print(f"  {words:22s}: corr with Δ log π(y_w) {c['r']:+.3f} (95 % interval {c['low']:+.3f} … {c['high']:+.3f}: "
              f"{c['verdict']}); log π(y_w) fell in {q['a']:.1%} of the quarter with the largest score vs {q['b']:.1%} of the smallest "
              f"(gap {q['gap']:+.3f}, {q['low']:+.3f} … {q['high']:+.3f}: {q['verdict']})")
    e = result["enumerable"]
    k = e["kl"]
    print(f"enumerable GPT: {e['n_responses']} responses, total probability {e['ref_total_probability']:.12f}; KL exact "
          f"{k['exact']:.4f}, sampled {k['sampled']:.4f} ± {k['standard_error']:.4f}")
    for name, trace in e["deterministic_pair"]["traces"].items():
        print(f"  {name:16s} π(y_l): " + " -> ".join(f"{t['p_loser']:.2e}" for t in trace))
    o = e["out_of_data"]
    print("  probability on responses in no pair: " + ", ".join(f"{k} {v:.3f}" for k, v in o.items()
                                                                 if isinstance(v, float) and "gain" not in k and k != "beta"))
