"""The doctor: the checks a careful engineer runs before trusting a DPO run.
`python -m minidpo doctor [--data FILE] [--inject FAULT]` (the faults live in `museum.py`).

Each check looks at what training would actually use (`Setup`: the policy, the reference, the
encoded pairs, the settings) and gives a one-line verdict and, when it fails, the fix:

  ln2-at-step-0       with π = π_ref the loss is ln 2 and the rewards are 0, and the gradient is not 0
  reference-frozen    a few optimizer steps leave the reference untouched; it shares no storage
  no-empty-responses  no pair lost its whole response to truncation
  end-token-scored    the response mask includes the end token (not masked as padding)
  tokenized-apart     each row is the prompt and the response tokenized separately (no BPE merge
                      across the boundary, the mask exactly on the response)
  dropout-off         two log-prob passes of the training policy on the same batch agree
  chosen-differs      no pair has identical chosen and rejected tokens
  gradient-finite     the step-0 gradient is finite
  truncation          how many pairs were truncated, and by how much
  log-prob-scale      sums of log-probs, or a β that was scaled up with the mean
  labels-agree        (the toy world only, where the gold reward is known) chosen beats rejected;
                      a real run has no gold reward, so it cannot run this one (NEEDS_GOLD)

The museum (`museum.py`) switches the classic bugs on one at a time in a `Setup` and shows which of
these checks catches each.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import world
from ..checkpoint import load_gpt
from ..dpo import DPOConfig, batch_loss, pair_logps, pair_record
from ..preferences import encode_pairs, read_preferences
from ..training import make_optimizer


@dataclass
class Setup:
    """What a DPO run would train with: policy, reference, pairs as rows, settings."""
    tok: object
    policy: torch.nn.Module
    reference: torch.nn.Module
    pairs: list
    encoded: list
    truncated: list           # (pair index, tokens cut) of every truncated pair
    cfg: DPOConfig
    fault: str | None = None  # the museum's bug switched on in it, if any


def build(tok, sft_path, data_file, cfg: DPOConfig, device="cpu", max_pairs: int | None = None) -> Setup:
    """The policy and reference from the SFT checkpoint, the pairs of `data_file` encoded as
    training encodes them (`museum.inject` switches a classic bug on in the result)."""
    pairs, _ = read_preferences(data_file)
    pairs = pairs[:max_pairs]
    policy = load_gpt(sft_path, device, vocab_size=tok.vocab_size)[0].train()
    reference = load_gpt(sft_path, device, vocab_size=tok.vocab_size)[0].eval()
    encoded, truncated = encode_with_truncation(tok, pairs, policy.config.block_size)
    return Setup(tok, policy, reference, pairs, encoded, truncated, cfg)


def encode_with_truncation(tok, pairs, block_size):
    """Rows as training builds them (preferences.encode_pairs), and (pair index, tokens cut) of
    every truncated pair."""
    encoded, truncated = [], []
    for i, pair in enumerate(pairs):
        [(c_row, r_row)], report = encode_pairs(tok, [pair], block_size)
        if report["truncated"]:
            full = len(tok.encode_response(pair["chosen"])) + len(tok.encode_response(pair["rejected"]))
            truncated.append((i, full - sum(c_row[1]) - sum(r_row[1])))
        encoded.append((c_row, r_row))
    return encoded, truncated


# --- the checks -----------------------------------------------------------------------------------
@dataclass
class Check:
    name: str
    ok: bool
    verdict: str
    fix: str = ""

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:19s} {self.verdict}" + ("" if self.ok else f" -> {self.fix}")


def _first_batch(s: Setup):
    """The first training batch and its reference log-probs (the reference in eval mode)."""
    batch = s.encoded[:s.cfg.batch_size]
    return batch, pair_logps(s.reference, batch, s.tok.end_id, s.cfg.average_logps)


def _dpo(cfg: DPOConfig) -> DPOConfig:
    """The doctor measures with plain DPO (the ln 2 of step 0 is DPO's), whatever the run's loss."""
    return replace(cfg, loss_type="sigmoid", label_smoothing=0.0, loss_args={})


def _grad_norm(model) -> float:
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.grad is not None))


def check_ln2(s: Setup) -> Check:
    """At step 0 the policy is the reference: DPO's loss is ln 2, the rewards 0, the gradient not."""
    policy = copy.deepcopy(s.policy).train()  # as the training loop runs it
    batch, ref = _first_batch(s)
    loss, _, m = batch_loss(policy, batch, ref, _dpo(s.cfg), s.tok.end_id)
    loss.backward()
    grad = _grad_norm(policy)
    if abs(loss.item() - math.log(2)) > 1e-4 or abs(m["rewards/chosen"]) > 1e-4:
        return Check("ln2-at-step-0", False, f"loss {loss.item():.4f} ≠ ln 2 = 0.6931 at step 0 (rewards/chosen "
                     f"{m['rewards/chosen']:+.4f}): the training policy does not score like the reference",
                     "turn dropout off (eval-mode scores, or dropout 0) and start both from the same checkpoint")
    if not grad > 0:
        return Check("ln2-at-step-0", False, "loss ln 2 but no gradient: nothing in the batch can move the policy",
                     "check the response masks and that the policy's parameters require grad")
    return Check("ln2-at-step-0", True, f"loss {loss.item():.6f} = ln 2, rewards 0, gradient norm {grad:.3f} > 0")


def check_reference_frozen(s: Setup) -> Check:
    """Three optimizer steps on the policy must leave the reference as it was."""
    shared = {p.data_ptr() for p in s.policy.parameters()} & {p.data_ptr() for p in s.reference.parameters()}
    before = [p.detach().clone() for p in s.reference.parameters()]
    policy = s.policy if shared else copy.deepcopy(s.policy)
    saved = copy.deepcopy(s.policy.state_dict())
    opt = make_optimizer(policy, s.cfg.lr)
    batch, ref = _first_batch(s)
    for _ in range(3):
        loss, _, _ = batch_loss(policy, batch, ref, _dpo(s.cfg), s.tok.end_id)
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = sum(not torch.equal(b, p.detach()) for b, p in zip(before, s.reference.parameters()))
    if shared:
        s.policy.load_state_dict(saved)  # the check trained the real policy: put it back
    if shared or moved:
        return Check("reference-frozen", False, f"the reference shares {len(shared)} tensors with the policy and "
                     f"{moved} of its tensors changed in 3 policy steps: it is not a frozen reference",
                     "load a separate copy of the SFT checkpoint as the reference (eval mode, no grad)")
    return Check("reference-frozen", True, "3 policy steps left the reference unchanged; no shared storage")


def check_no_empty(s: Setup) -> Check:
    empty = [i for i, (c, r) in enumerate(s.encoded) if not any(c[1]) or not any(r[1])]
    if empty:
        return Check("no-empty-responses", False, f"{len(empty)} of {len(s.encoded)} pairs have an empty response "
                     f"after truncation (first: pair {empty[0]}): they score log π = 0 and teach nothing",
                     "truncate the prompt first and keep at least one response token (preferences.encode_pair)")
    return Check("no-empty-responses", True, f"every one of the {len(s.encoded)} pairs keeps response tokens")


def check_end_token(s: Setup) -> Check:
    """Each row whose response was not cut must have <|end|> as its last scored token."""
    cut = {i for i, _ in s.truncated}
    missing = [i for i, pair in enumerate(s.encoded) if i not in cut for ids, mask in pair
               if any(mask) and ids[max(j for j, m in enumerate(mask) if m)] != s.tok.end_id]
    if missing:
        return Check("end-token-scored", False, f"{len(missing)} rows do not score their end token: the policy is never "
                     "told when to stop", "keep the end token in the response mask; pad with a mask, not by token id")
    return Check("end-token-scored", True, "every complete response scores its end token")


def check_tokenized_apart(s: Setup) -> Check:
    """Each row must be encode_prompt(x) + encode_response(y), the mask exactly on the second part."""
    bad = 0
    for pair, rows in zip(s.pairs, s.encoded):
        p = s.tok.encode_prompt(pair["prompt"])
        for text, (ids, mask) in zip((pair["chosen"], pair["rejected"]), rows):
            n = sum(not m for m in mask[:len(ids)])  # prompt tokens (possibly cut from the left)
            y = s.tok.encode_response(text)
            if ids[:n] != p[len(p) - n:] or ids[n:] != y[:len(ids) - n] or not all(mask[n:len(ids)]):
                bad += 1
    if bad:
        return Check("tokenized-apart", False, f"{bad} rows are not prompt and response tokenized apart: a BPE merge "
                     "or a missing separator moves the response mask", "tokenize the prompt and the response separately "
                     "and concatenate the ids (data.render)")
    return Check("tokenized-apart", True, "every row is the prompt and the response tokenized separately")


def check_dropout(s: Setup) -> Check:
    batch = s.encoded[:8]
    with torch.no_grad():
        a = pair_record(s.policy, batch, s.tok.end_id, s.cfg.beta, s.cfg.average_logps).chosen_logps
        b = pair_record(s.policy, batch, s.tok.end_id, s.cfg.beta, s.cfg.average_logps).chosen_logps
    if not torch.equal(a, b):
        return Check("dropout-off", False, f"two log-prob passes of the training policy differ by up to "
                     f"{(a - b).abs().max().item():.3f} nats: dropout (or another randomness) is on",
                     "set dropout to 0 for preference tuning (TRL's disable_dropout)")
    return Check("dropout-off", True, "the training policy's log-probs are deterministic")


def check_chosen_differs(s: Setup) -> Check:
    same = sum(c[0] == r[0] for c, r in s.encoded)
    if same:
        return Check("chosen-differs", False, f"{same} pairs have identical chosen and rejected tokens",
                     "drop them: their gradient is 0 and their accuracy a tie")
    return Check("chosen-differs", True, "no pair has identical chosen and rejected tokens")


def check_gradient_finite(s: Setup) -> Check:
    policy = copy.deepcopy(s.policy)
    batch, ref = _first_batch(s)
    loss, _, _ = batch_loss(policy, batch, ref, s.cfg, s.tok.end_id)
    loss.backward()
    bad = [n for n, p in policy.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad or not torch.isfinite(loss):
        return Check("gradient-finite", False, f"loss {loss.item()} and {len(bad)} non-finite gradients at step 0",
                     "look for empty responses (mean log-probs of 0 tokens) and β or the loss's arguments")
    return Check("gradient-finite", True, f"the step-0 loss ({s.cfg.loss_type}) and gradient are finite")


def check_truncation(s: Setup) -> Check:
    n = len(s.truncated)
    if not n:
        return Check("truncation", True, "no pair was truncated")
    mean_cut = sum(c for _, c in s.truncated) / n
    ok = n <= 0.05 * len(s.encoded)
    return Check("truncation", ok, f"{n} of {len(s.encoded)} pairs truncated ({n / len(s.encoded):.1%}), "
                 f"{mean_cut:.1f} response tokens cut on average", "raise the context, or shorten the prompts")


def check_logp_scale(s: Setup) -> Check:
    if not s.cfg.average_logps:
        return Check("log-prob-scale", True, f"sequence log-probs are sums, as in the paper (β = {s.cfg.beta})")
    lengths = [sum(c[1]) for c, _ in s.encoded]
    mean_len = sum(lengths) / len(lengths)
    return Check("log-prob-scale", False, f"mean log-probs per token with β = {s.cfg.beta}: on the paper's summed "
                 f"scale that is β ≈ {s.cfg.beta / mean_len:.3f} (responses average {mean_len:.1f} tokens), a "
                 f"{mean_len:.0f}× looser leash", f"use sums, or multiply β by about {mean_len:.0f}")


def check_labels(s: Setup) -> Check:
    if not all(p["prompt"].startswith(world.PROMPT_PREFIX) for p in s.pairs):
        return Check("labels-agree", True, "not the toy world: no gold reward to check the labels against")
    scores = [(world.gold_reward(p["prompt"], p["chosen"]), world.gold_reward(p["prompt"], p["rejected"])) for p in s.pairs]
    agree = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in scores) / len(scores)
    if agree < 0.5:
        return Check("labels-agree", False, f"chosen beats rejected under the gold reward in only {agree:.1%} of pairs: "
                     "the labels look swapped", "check which field is chosen when the file is read")
    return Check("labels-agree", True, f"chosen beats rejected under the gold reward in {agree:.1%} of pairs")


NEEDS_GOLD = ("labels-agree",)  # the checks only a world with a known reward can run: a real run has none


CHECKS = (check_ln2, check_reference_frozen, check_no_empty, check_end_token, check_tokenized_apart, check_dropout,
          check_chosen_differs, check_gradient_finite, check_truncation, check_logp_scale, check_labels)


def diagnose(s: Setup) -> list[Check]:
    return [check(s) for check in CHECKS]


# --- the doctor on a run folder ---------------------------------------------------------------------
def run_doctor(run, data=None, inject=None, **overrides) -> list[Check]:
    """`python -m minidpo doctor`: the checks on the run's SFT model and a preference file (default:
    the run's pairs), one line each. `inject`: a function Setup -> Setup that switches a bug on
    (`doctor --inject FAULT` passes the museum's)."""
    cfg = run.settings(DPOConfig, **overrides)
    setup = build(run.tok, run.path("sft.pt"), Path(data) if data else run.path("prefs_train.jsonl"), cfg, run.device)
    checks = diagnose(inject(setup) if inject else setup)
    for c in checks:
        print(c.line())
    failed = [c.name for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks pass" + (f"; failing: {', '.join(failed)}" if failed else ""))
    return checks


# --- the doctor on a finished run's curves ----------------------------------------------------------
def read_curves(history: list[dict]) -> list[Check]:
    """What a healthy DPO run's logged curves do (`dpo_metrics.json`'s "history": the held-out pairs
    at step 0, along training and at the end, and the training batch every log_every steps), one
    check each. A run that passes them all can still be wrong: swapped labels look healthy here."""
    ev = [r for r in history if "eval/loss" in r]
    train = [r for r in history if "loss" in r]
    first, last = ev[0], ev[-1]
    ln2 = math.log(2)
    checks = []
    ok = abs(first["eval/loss"] - ln2) < 1e-3 and first["eval/rewards/accuracies"] == 0
    checks.append(Check("starts-at-ln2", ok, f"held-out loss {first['eval/loss']:.4f} at step {first['step']} (ln 2 = "
                        f"{ln2:.4f}), accuracy {first['eval/rewards/accuracies']:.2f} (every reward 0: ties, counted wrong)",
                        "the policy must start as the reference: same checkpoint, eval-mode scores"))
    moved = max((abs(r["loss"] - ln2) for r in train), default=0.0)
    checks.append(Check("train-loss-moves", moved > 1e-3, f"the training batch's loss leaves ln 2 by up to {moved:.4f}",
                        "a loss stuck at ln 2 means log-ratios stuck at 0: is the reference the policy itself?"))
    checks.append(Check("loss-falls", last["eval/loss"] < first["eval/loss"] - 1e-3,
                        f"held-out loss {first['eval/loss']:.3f} -> {last['eval/loss']:.3f}",
                        "no learning on held-out pairs: look at lr, β, the masks"))
    checks.append(Check("accuracy-rises", last["eval/rewards/accuracies"] > 0.5,
                        f"held-out implicit-reward accuracy {last['eval/rewards/accuracies']:.3f} at the end",
                        "the implicit reward does not rank held-out pairs better than a coin"))
    checks.append(Check("margins-grow", last["eval/rewards/margins"] > first["eval/rewards/margins"],
                        f"held-out rewards/margins {first['eval/rewards/margins']:+.3f} -> {last['eval/rewards/margins']:+.3f}",
                        "the chosen responses do not pull ahead of the rejected ones"))
    return checks
