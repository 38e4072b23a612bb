"""The doctor: the checks a careful engineer runs before trusting a DPO run, and the museum of the
classic bugs they catch. `python -m minidpo doctor [--data FILE] [--inject FAULT]`.

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
  labels-agree        (the toy world only, where the gold reward is known) chosen beats rejected

The museum (`FAULTS`): each classic bug can be switched on with `--inject NAME` in a --fast DPO run,
which then shows its symptom in the metrics learners watch; `run_museum` does them all, with what the
doctor says and the gold reward each costs.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import world
from .checkpoint import load_gpt
from .data import row
from .dpo import DPOConfig, batch_loss, compute_reference_logps, pair_record
from .preferences import encode_pairs, read_preferences
from .training import make_optimizer


@dataclass(frozen=True)
class Fault:
    what: str        # the bug, as it happens in a real code base
    symptom: str     # what a learner sees
    thread: str      # where people met it


FAULTS = {
    "pad-equals-eos": Fault(
        "the end token is treated as padding (pad id = eos id), so it leaves the response mask",
        "nothing teaches the policy when to stop; preference tuning shifts lengths unchecked",
        "https://github.com/huggingface/trl/pull/6357"),
    "dropout-on": Fault(
        "dropout stays on in the policy's log-prob passes while the reference runs without it",
        "the loss is not ln 2 at step 0 and the rewards are noise before any learning",
        "https://github.com/huggingface/trl/issues/744"),
    "shared-reference": Fault(
        "the reference is the policy itself, not a frozen copy",
        "the loss is stuck at ln 2 and every reward at 0: the log-ratios are 0 by construction",
        "https://github.com/huggingface/trl/issues/1627"),
    "swap-labels": Fault(
        "chosen and rejected are swapped when the file is read",
        "the implicit reward learns, the accuracy rises, and the gold reward falls",
        "https://github.com/eric-mitchell/direct-preference-optimization/issues/8"),
    "merge-boundary": Fault(
        "prompt + response tokenized as one string and the mask placed by the prompt's token count",
        "rows lose the prompt/response separator, the mask can be off by a token; tuning transfers less",
        "https://github.com/huggingface/trl/issues/2054"),
    "truncate-to-empty": Fault(
        "a truncation rule (max length 24) that cuts both completions of a long pair to nothing",
        "those pairs score log π = 0 on both sides: they train nothing, silently (TRL got NaN with means)",
        "https://github.com/huggingface/trl/issues/6548"),
    "mean-logps-without-beta": Fault(
        "mean log-probs per token with the β tuned for sums",
        "a leash about response-length times looser: KL and fluency drift further for the same loss",
        "https://github.com/huggingface/trl/issues/789"),
}
TRUNCATE_TO = 24  # the max length of the truncate-to-empty fault


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
    fault: str | None = None


def build(tok, sft_path, data_file, cfg: DPOConfig, fault: str | None = None, device="cpu",
          max_pairs: int | None = None) -> Setup:
    """The policy and reference from the SFT checkpoint, the pairs of `data_file` encoded as
    training encodes them; with `fault`, one classic bug switched on (see FAULTS)."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"--inject must be one of {', '.join(FAULTS)}, not {fault!r}")
    pairs, _ = read_preferences(data_file)
    pairs = pairs[:max_pairs]
    if fault == "swap-labels":
        pairs = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs]
    policy = load_gpt(sft_path, device, vocab_size=tok.vocab_size)[0].train()
    reference = policy if fault == "shared-reference" else load_gpt(sft_path, device, vocab_size=tok.vocab_size)[0].eval()
    if fault == "dropout-on":
        for module in policy.modules():
            if hasattr(module, "dropout"):
                module.dropout = 0.1
    if fault == "mean-logps-without-beta":
        cfg = replace(cfg, average_logps=True)
    encoded, truncated = _encode(tok, pairs, policy.config.block_size, fault)
    return Setup(tok, policy, reference, pairs, encoded, truncated, cfg, fault)


def encode_rows(tok, pairs, block_size, fault=None) -> list:
    """Pairs as rows, as training encodes them, or as the pipeline with `fault` would."""
    return _encode(tok, pairs, block_size, fault)[0]


def _encode(tok, pairs, block_size, fault):
    """Rows as training builds them (preferences.encode_pair), or as a faulty pipeline would."""
    encoded, truncated = [], []
    for i, pair in enumerate(pairs):
        if fault == "merge-boundary":  # one string, mask from the prompt's own token count
            rows = []
            for text in (pair["chosen"], pair["rejected"]):
                joint = [tok.prompt_id] + tok.encode(pair["prompt"] + text) + [tok.end_id]
                n_prompt = 1 + len(tok.encode(pair["prompt"]))
                rows.append((joint[:block_size], ([False] * n_prompt + [True] * len(joint))[:min(len(joint), block_size)]))
            encoded.append(tuple(rows))
            continue
        if fault == "truncate-to-empty":
            p, c, r = tok.encode_prompt(pair["prompt"]), tok.encode_response(pair["chosen"]), tok.encode_response(pair["rejected"])
            longer = max(len(c), len(r))
            if len(p) + longer > TRUNCATE_TO:
                keep = max(0, TRUNCATE_TO - len(p) - longer)  # the off-by-the-longer-completion rule
                truncated.append((i, len(c) + len(r) - 2 * min(keep, len(c), len(r))))
                c, r = c[:keep], r[:keep]
            encoded.append((row(p, c), row(p, r)))
            continue
        [(c_row, r_row)], report = encode_pairs(tok, [pair], block_size)
        if report["truncated"]:
            full = len(tok.encode_response(pair["chosen"])) + len(tok.encode_response(pair["rejected"]))
            truncated.append((i, full - sum(c_row[1]) - sum(r_row[1])))
        if fault == "pad-equals-eos":  # the collator masks every pad-id token, the real end token too
            c_row, r_row = [(ids, [m and t != tok.end_id for t, m in zip(ids, mask)]) for ids, mask in (c_row, r_row)]
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
    return batch, compute_reference_logps(s.reference, batch, s.tok.end_id, s.cfg.average_logps)


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


CHECKS = (check_ln2, check_reference_frozen, check_no_empty, check_end_token, check_tokenized_apart, check_dropout,
          check_chosen_differs, check_gradient_finite, check_truncation, check_logp_scale, check_labels)


def diagnose(s: Setup) -> list[Check]:
    return [check(s) for check in CHECKS]


# --- the doctor on a run folder, and the museum -------------------------------------------------------
def run_doctor(run, data=None, fault=None, **overrides) -> list[Check]:
    """`python -m minidpo doctor`: the checks on the run's SFT model and a preference file (default:
    the run's pairs), one line each; with `fault`, on a setup with that bug switched on."""
    cfg = run.settings(DPOConfig, **overrides)
    setup = build(run.tok, run.path("sft.pt"), Path(data) if data else run.path("prefs_train.jsonl"), cfg, fault,
                  run.device)
    checks = diagnose(setup)
    for c in checks:
        print(c.line())
    failed = [c.name for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks pass" + (f"; failing: {', '.join(failed)}" if failed else ""))
    return checks


def run_museum(run) -> dict:
    """Every fault of FAULTS, and the clean run, trained the same way on the run's pairs: the
    metrics learners watch at the start and the end, the samples' gold reward, fluency and length
    on the held-out films, and which of the doctor's checks fail."""
    result = run.study("museum", lambda: _museum(run))
    print_museum(result["rows"])  # also when reused: the table is what the command is for
    return result


def _museum(run) -> None:
    from .checkpoint import read_json, write_json
    from .dpo import train_dpo
    from .evaluate import summary_row
    from .training import StudyProgress
    from .preferences import write_preferences
    folder = run.out / "museum"
    cfg = run.settings(DPOConfig)
    train_file = run.path("prefs_train.jsonl")
    if run.fast:  # a smoke run: the first 200 pairs
        train_file = folder / "pairs_fast.jsonl"
        write_preferences(train_file, read_preferences(run.path("prefs_train.jsonl"))[0][:200])
    progress = StudyProgress("museum", ["fault"] * (len(FAULTS) + 1))
    rows = {}
    for fault in (None, *FAULTS):
        name = fault or "clean"

        def go(fault=fault, name=name):
            s = build(run.tok, run.path("sft.pt"), train_file, cfg, fault, run.device)
            checks = diagnose(s)
            m = train_dpo(cfg, run.tok, run.path("sft.pt"), train_file, run.path("prefs_val.jsonl"),
                          folder, run.device, run.dtype, quiet=True, out_name=f"{name}_policy", fault=fault)
            train = [r for r in m["history"] if "loss" in r]
            ev = summary_row(run.evaluate(run.load_policy(folder / f"{name}_policy.pt")))
            keys = ("loss", "rewards/chosen", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")
            write_json(folder / f"{name}.json", {
                "fault": fault, "first": {k: train[0][k] for k in keys}, "last": {k: train[-1][k] for k in keys},
                "eval": ev, "failed_checks": [c.name for c in checks if not c.ok],
                "checks": [c.line() for c in checks]})
            for f in folder.glob(f"{name}_policy*"):  # evaluated: only the numbers stay
                f.unlink()
        computed = run.cached(f"museum_{name}", {**cfg.key(), "fault": fault},
                              {**run.inputs("dpo"), "train_data": train_file}, go,
                              outputs=[folder / f"{name}.json"], code="doctor", folder=folder, announce=False)
        rows[name] = read_json(folder / f"{name}.json")
        progress.unit_done("fault", name, read_json(folder / "provenance" / f"museum_{name}.json")["seconds"]
                           if computed else None)
    clean_gold = rows["clean"]["eval"]["gold_reward"]
    for r in rows.values():
        r["gold_cost"] = clean_gold - r["eval"]["gold_reward"]
    write_json(folder / "museum.json", {"rows": rows, "faults": {k: vars(v) for k, v in FAULTS.items()}})


def print_museum(rows: dict) -> None:
    print(f"{'fault':24s} | loss first->last | logps/chosen  | gold   | cost  | fluency | length | doctor says")
    for name, r in rows.items():
        f, l, e = r["first"], r["last"], r["eval"]
        print(f"{name:24s} | {f['loss']:.3f} -> {l['loss']:.3f} | {f['logps/chosen']:+6.1f}->{l['logps/chosen']:+6.1f} | "
              f"{e['gold_reward']:+.3f} | {r['gold_cost']:+.2f} | {e['fluency']:.3f}   | {e['length']:5.1f}  | "
              + (", ".join(r["failed_checks"]) or "all checks pass"))
