"""Exercises on what DPO and the reward model compute: the response log-probs with their mask, the
Bradley–Terry loss, the DPO loss on four numbers, and conservative DPO. Each solution is the
library's own function; each mistake is written out the way learners write it."""
from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F

from .. import losses
from ..checkpoint import read_json
from ..dpo import DPOConfig, train_dpo
from ..model import ResponseLogps, sequence_logps as library_logps
from ..reward_model import RMConfig, train_reward_model
from ..rlhf import RLHFConfig, train_rlhf
from ..studies import sweep
from . import train
from .spec import Case, Exercise, Mistake

T, Fa = True, False  # short names keep the masks of the cases readable


def _t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


# --- sequence-logps ---------------------------------------------------------------------------------
def logps_solution(logits, input_ids, response_mask):
    """`model.sequence_logps` with the logits given: its "model" returns them (it asks for all but
    the last position, which predicts nothing)."""
    return library_logps(lambda ids: logits[:, :ids.size(1)], input_ids, response_mask).logps


def _token_logps(logits, input_ids):
    """log p(input_ids[t+1] | ...) read from logits[:, t]: (B, T-1)."""
    return F.log_softmax(logits[:, :-1], -1).gather(2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def _logps_cases():
    g = torch.Generator().manual_seed(0)

    def logits(b, t, v, dtype=torch.float32):
        return (torch.randn(b, t, v, generator=g) * 10).round().to(dtype) / 10

    two_rows_ids = torch.tensor([[1, 4, 0, 2, 3, 4, 4], [1, 2, 3, 0, 1, 2, 4]])
    two_rows_mask = torch.tensor([[Fa, Fa, T, T, T, Fa, Fa], [Fa, Fa, Fa, Fa, T, T, Fa]])
    big = torch.tensor([[[0.0, -200.0, 5.0], [1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]])
    return [
        Case("one row: one prompt token, then two response tokens", (logits(1, 3, 3), torch.tensor([[2, 0, 1]]),
                                                                       torch.tensor([[Fa, T, T]]))),
        Case("a logit of −200 on the target: its softmax is 0 in float32", (big, torch.tensor([[0, 1, 2]]),
                                                                             torch.tensor([[Fa, T, T]])), (0,)),
        Case("a one-token response after a three-token prompt, then padding",
             (logits(1, 6, 4), torch.tensor([[1, 3, 0, 2, 3, 3]]), torch.tensor([[Fa, Fa, Fa, T, Fa, Fa]])), (0,)),
        Case("two rows: prompts and responses of different lengths, right-padded",
             (logits(2, 7, 5), two_rows_ids, two_rows_mask), (0,)),
        Case("the same rows in float64: the output stays float64",
             (logits(2, 7, 5, torch.float64), two_rows_ids, two_rows_mask), (0,)),
    ]


LOGPS_MISTAKES = (
    Mistake("logits-at-t", "logits[:, t] is the prediction of input_ids[:, t+1]: token t's log-prob is read from "
            "the logits at t−1, so the targets are input_ids[:, 1:] against logits[:, :-1].", "logps",
            lambda lg, ids, m: (F.log_softmax(lg, -1).gather(2, ids.unsqueeze(-1)).squeeze(-1) * m).sum(-1)),
    Mistake("mask-not-shifted", "the targets are shifted by one (input_ids[:, 1:]) and the mask must move with them "
            "(response_mask[:, 1:]); the unshifted mask scores the last prompt token and drops the last response token.",
            "logps", lambda lg, ids, m: (_token_logps(lg, ids) * m[:, :-1]).sum(-1)),
    Mistake("prompt-and-padding-counted", "log π(y|x) sums over the response tokens only: the prompt is given, not "
            "generated, and padding is not text.", "rung-1", lambda lg, ids, m: _token_logps(lg, ids).sum(-1)),
    Mistake("mean-not-sum", "the paper's log π(y|x) is a sum over tokens; a mean per token changes the scale of "
            "every log-ratio by the response length (and so what β means).", "logps",
            lambda lg, ids, m: (_token_logps(lg, ids) * m[:, 1:]).sum(-1) / m[:, 1:].sum(-1)),
    Mistake("log-of-softmax", "torch.log(torch.softmax(x)) underflows: a probability below ~1e-45 is 0 in float32 and "
            "its log −inf; log_softmax computes the same value stably.", "logps",
            lambda lg, ids, m: (torch.log(torch.softmax(lg[:, :-1], -1)).gather(2, ids[:, 1:].unsqueeze(-1))
                                .squeeze(-1) * m[:, 1:]).sum(-1)),
    Mistake("raw-logits", "logits are unnormalised scores; a log-probability is the logit minus the log of the sum of "
            "exp(logits) over the vocabulary (log_softmax).", "logps",
            lambda lg, ids, m: (lg[:, :-1].gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1) * m[:, 1:]).sum(-1)),
)


def plugged_logps(fn):
    """What DPO calls to score rows (`model.sequence_logps`'s place, see `dpo.pair_record`), filled by a
    learner's sequence_logps(logits, input_ids, response_mask). The forward pass is the library's own,
    so the library's function here reproduces DPO bit for bit."""
    def logps(model, input_ids, response_mask, average: bool = False):
        if average:
            raise ValueError("the exercise's sequence_logps sums over the response; --average-logps is not part of it")
        logits = F.pad(model(input_ids[:, :-1]), (0, 0, 0, 1))  # (B, T, V): the last position predicts nothing
        seq = fn(logits, input_ids, response_mask)
        mask = response_mask[:, 1:]
        # per-token terms: DPO's sigmoid loss reads only the sums (the record's token fields stay 0)
        return ResponseLogps(torch.zeros(mask.shape, device=seq.device), seq, mask.sum(-1))
    return logps


def train_logps(run, learner, **_):
    """DPO --fast with the learner's log-probs for the policy, the reference and the held-out pairs."""
    cfg, reference = run.settings(DPOConfig), train.reference(run, "dpo")

    def go(folder):
        for stale in folder.glob("ref_logps-*.pt"):  # that cache knows the inputs, not the scoring function
            stale.unlink()
        train_dpo(cfg, run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"), run.path("prefs_val.jsonl"),
                  folder, run.device, run.dtype, quiet=True, out_name="policy", logps_fn=plugged_logps(learner.fn))
        return folder / "policy.pt", {}
    yours = train.learner_unit(run, "sequence-logps", cfg.key(), learner, go, run.inputs("dpo"),
                               "exercises.preference_losses", "DPO --fast with your sequence_logps")
    return [("DPO, the library's log-probs", reference), ("DPO, your sequence_logps", yours)]


SEQUENCE_LOGPS = Exercise(
    "sequence-logps", "sequence_logps", "core", "logps", "the log-prob of each row's response, from logits and a mask",
    ("logits", "input_ids", "response_mask"), ("logps",),
    """log π(y|x) = Σ_t log p(input_ids[b, t] | input_ids[b, <t]), over the response tokens t of each row.

Inputs
  logits        (B, T, V) float32 or float64: the model's outputs on input_ids, so logits[:, t]
                predicts input_ids[:, t+1] (the last position predicts nothing).
  input_ids     (B, T) long: [prompt, response, padding] of each row, right-padded.
  response_mask (B, T) bool: True where input_ids[b, t] is a response token (the end token
                included); False on the prompt and on the padding.
Output
  (B,) in the logits' dtype: for each row, the SUM (not the mean) over its response tokens of the
  log-probability of that token, read from the logits one position earlier. Prompt and padding
  tokens contribute exactly nothing. Differentiable w.r.t. logits.
Use log_softmax (not log of softmax). A batch holds rows of different prompt and response lengths.""",
    logps_solution, "minidpo/model.py: sequence_logps", _logps_cases, LOGPS_MISTAKES, train=train_logps,
    train_note="trains DPO --fast with your log-probs for the policy, the reference and the held-out pairs")


# --- bradley-terry-loss --------------------------------------------------------------------------------
def _bt_cases():
    return [
        Case("one pair whose scores are equal: ln 2", (_t([0.3]), _t([0.3])), (0, 1)),
        Case("a margin of −1000: σ(−1000) is 0 in floating point", (_t([-500.0]), _t([500.0])), (0, 1)),
        Case("two pairs", (_t([1.0, -0.5]), _t([0.2, 0.5])), (0, 1)),
        Case("float64, a batch of four", (_t([2.0, 0.0, -1.0, 0.5], torch.float64),
                                          _t([1.0, 0.0, 1.0, -3.0], torch.float64)), (0, 1)),
    ]


LOG_OF_SIGMOID = ("torch.log(torch.sigmoid(x)) underflows: σ(−1000) is 0 in floating point and its log −inf; "
                  "F.logsigmoid computes log σ(x) stably.")
BT_MISTAKES = (
    Mistake("chosen-rejected-swapped", "the loss is −log σ(r_chosen − r_rejected): the chosen score comes first, so "
            "that minimising it raises the chosen response's reward.", "bt-loss",
            lambda c, r: -F.logsigmoid(r - c)),
    Mistake("log-of-sigmoid", LOG_OF_SIGMOID, "bt-loss", lambda c, r: -torch.log(torch.sigmoid(c - r))),
    Mistake("missing-minus", "a loss is minimised: the negative log-likelihood −log σ(Δ), not the log-likelihood "
            "log σ(Δ) (minimising that pushes the rewards the wrong way).", "bt-loss",
            lambda c, r: F.logsigmoid(c - r)),
    Mistake("batch-mean", "return one loss per pair, shape (B,): the caller reduces (and reports per pair).",
            "bt-loss", lambda c, r: -F.logsigmoid(c - r).mean()),
)


def rm_note(metrics: dict) -> str:
    return (f"reward model held-out accuracy {metrics['val_accuracy']:.3f} (oracle {metrics['oracle_accuracy']:.3f}), "
            f"correlation with gold {metrics['gold_correlation_heldout']:.2f}")


def train_bt(run, learner, **_):
    """The reward model --fast with the learner's loss, then REINFORCE --fast on it."""
    rm_cfg, rl_cfg = run.settings(RMConfig), run.settings(RLHFConfig)
    reference = {**train.reference(run, "rlhf"), "note": rm_note(read_json(run.path("reward_model_metrics.json")))}

    def go(folder):
        rm = train_reward_model(rm_cfg, run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"),
                                run.path("prefs_val.jsonl"), folder, run.device, run.dtype, quiet=True,
                                out_name="reward_model", loss_fn=learner.fn)
        train_rlhf(rl_cfg, run.tok, run.path("sft.pt"), folder / "reward_model.pt", folder, run.device, run.dtype,
                   quiet=True, out_name="policy")
        return folder / "policy.pt", {"note": rm_note(rm)}
    yours = train.learner_unit(run, "bradley-terry-loss", {"rm": asdict(rm_cfg), "rlhf": asdict(rl_cfg)}, learner,
                               go, run.inputs("reward_model"), "exercises.preference_losses",
                               "a reward model with your loss, then REINFORCE on it (--fast)")
    return [("REINFORCE on the library's reward model", reference), ("REINFORCE on your reward model", yours)]


BRADLEY_TERRY = Exercise(
    "bradley-terry-loss", "bradley_terry_loss", "core", "bt-loss", "the reward model's loss on scored pairs",
    ("chosen_scores", "rejected_scores"), ("losses",),
    """The Bradley–Terry model says P(y_w ≻ y_l) = σ(r(x, y_w) − r(x, y_l)) (eq. 1); its negative
log-likelihood is the reward model's loss (eq. 2):  L = −log σ(r_chosen − r_rejected).

Inputs
  chosen_scores   (B,) float32 or float64: the reward model's score r(x, y_w) of each chosen response.
  rejected_scores (B,) same dtype: r(x, y_l) of the rejected response of the same pair.
Output
  (B,) in the inputs' dtype: one loss per pair (do not average), differentiable w.r.t. both scores.
  It must stay finite for any margin, e.g. −1000 (use F.logsigmoid, not log of sigmoid).""",
    losses.bradley_terry_loss, "minidpo/losses.py: bradley_terry_loss", _bt_cases, BT_MISTAKES, train=train_bt,
    train_note="trains the reward model --fast with your loss, then REINFORCE --fast on that reward model")


# --- dpo-loss ----------------------------------------------------------------------------------------------
def dpo_solution(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    return losses.dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)


def _margin(pc, pr, rc, rr):
    return (pc - rc) - (pr - rr)


def _rewards(pc, pr, rc, rr, beta):
    return (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def _dpo_cases():
    d = torch.float64
    return [
        Case("one pair at step 0 (π = π_ref): loss ln 2, rewards 0", (_t([-4.0]), _t([-6.0]), _t([-4.0]), _t([-6.0]), 0.1),
             (0, 1)),
        Case("a tie: chosen and rejected score the same under π and under π_ref",
             (_t([-5.0]), _t([-5.0]), _t([-4.0]), _t([-4.0]), 0.1), (0, 1)),
        Case("β·h = −1000: σ(β·h) is 0 in floating point", (_t([-2010.0]), _t([-10.0]), _t([-10.0]), _t([-10.0]), 0.5),
             (0, 1)),
        Case("two pairs, β = 0.5", (_t([-3.0, -7.5]), _t([-5.0, -6.0]), _t([-4.0, -7.0]), _t([-4.5, -6.5]), 0.5), (0, 1)),
        Case("float64, three pairs, β = 0.1", (_t([-2.5, -9.0, -4.0], d), _t([-3.0, -8.0, -4.5], d),
                                               _t([-3.0, -8.5, -4.0], d), _t([-2.0, -8.5, -5.0], d), 0.1), (0, 1)),
    ]


DPO_MISTAKES = (
    Mistake("beta-outside-sigmoid", "β scales the log-ratio margin inside the sigmoid, −log σ(β·h); outside it only "
            "rescales the loss (and the gradient weight σ(−h) forgets β).", "beta",
            lambda pc, pr, rc, rr, b: (-b * F.logsigmoid(_margin(pc, pr, rc, rr)), *_rewards(pc, pr, rc, rr, b)),
            ("losses",)),
    Mistake("chosen-rejected-swapped", "the margin is chosen minus rejected: h = log π(y_w)/π_ref(y_w) − "
            "log π(y_l)/π_ref(y_l); swapped, DPO learns the opposite preference.", "dpo-loss",
            lambda pc, pr, rc, rr, b: dpo_solution(pr, pc, rr, rc, b), ("losses",)),
    Mistake("rewards-without-beta", "the implicit reward is β·log π/π_ref (eq. 5); without β, rewards/chosen and "
            "rewards/margins are on another scale than the loss's.", "dpo-loss",
            lambda pc, pr, rc, rr, b: (None, (pc - rc).detach(), (pr - rr).detach()),
            ("chosen_rewards", "rejected_rewards")),
    Mistake("rewards-not-detached", "the rewards are for logging: detach them, so nothing downstream can "
            "backpropagate into the policy through them.", "dpo-loss",
            lambda pc, pr, rc, rr, b: (-F.logsigmoid(b * _margin(pc, pr, rc, rr)), b * (pc - rc), b * (pr - rr)),
            ("chosen_rewards", "rejected_rewards")),
    Mistake("log-of-sigmoid", LOG_OF_SIGMOID, "dpo-loss",
            lambda pc, pr, rc, rr, b: (-torch.log(torch.sigmoid(b * _margin(pc, pr, rc, rr))),
                                       *_rewards(pc, pr, rc, rr, b)), ("losses",)),
    Mistake("no-reference", "DPO's margin is made of log-RATIOS to the reference; without π_ref it is another loss "
            "(no KL leash: the implicit reward is no longer β·log π/π_ref).", "dpo-loss",
            lambda pc, pr, rc, rr, b: (-F.logsigmoid(b * (pc - pr)), *_rewards(pc, pr, rc, rr, b)), ("losses",)),
    Mistake("batch-mean", "return one loss per pair, shape (B,): the caller reduces it (and logs per pair).",
            "dpo-loss", lambda pc, pr, rc, rr, b: (-F.logsigmoid(b * _margin(pc, pr, rc, rr)).mean(),
                                                   *_rewards(pc, pr, rc, rr, b)), ("losses",)),
)


def registered(name, learner, margin: bool = False, **args):
    """The learner's function as a registered loss (record form, or margin form), keyed by the source of
    the learner's whole file; removed again by `unregister`."""
    if margin:  # the learner's parameters are passed by position: their names are theirs
        losses.register_margin_loss(name, **args)(
            lambda h, beta, label_smoothing=0.0: learner.fn(h, beta, label_smoothing))
    else:
        def from_record(record):
            return losses.LossOutput(*learner.fn(record.chosen_logps, record.rejected_logps,
                                                 record.ref_chosen_logps, record.ref_rejected_logps, record.beta))
        losses.register_loss(name)(from_record)
    losses.LOSSES[name] = train.keyed_by_file(losses.LOSSES[name], learner)
    return name


def train_dpo_loss(run, learner, **_):
    """DPO --fast with the learner's dpo_loss as a registered loss (`sweep.trained`)."""
    beta, reference = run.settings(DPOConfig).beta, train.reference(run, "dpo")
    with train.temporary_loss(registered("exercise-dpo-loss", learner)) as name:
        checkpoint = train.announced(f"DPO --fast with your dpo_loss (β = {beta})",
                                     lambda: sweep.trained(run, "dpo", beta, loss_type=name))
        yours = sweep.evaluate(run, checkpoint)
    return [("DPO, the library's dpo_loss", reference), ("DPO, your dpo_loss", yours)]


DPO_LOSS = Exercise(
    "dpo-loss", "dpo_loss", "core", "dpo-loss", "the DPO loss on four numbers (eq. 7), and the rewards it logs",
    ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps", "beta"),
    ("losses", "chosen_rewards", "rejected_rewards"),
    """h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)]   (the log-ratio margin)
L = −log σ(β·h)                                                            (eq. 7)
rewards: r̂(x, y) = β·log π(y|x)/π_ref(y|x), for chosen and for rejected     (eq. 5)

Inputs
  policy_chosen_logps, policy_rejected_logps  (B,) float32 or float64: log π(y|x), summed over
      the response tokens, of the chosen (y_w) and the rejected (y_l) response of each pair.
  ref_chosen_logps, ref_rejected_logps        (B,) same dtype: the same under the frozen reference.
  beta   a float > 0.
Output, a tuple of three (B,) tensors in the inputs' dtype:
  losses            one per pair (do not average), differentiable w.r.t. the policy log-probs;
  chosen_rewards    β·(policy_chosen_logps − ref_chosen_logps), DETACHED (for logging);
  rejected_rewards  β·(policy_rejected_logps − ref_rejected_logps), DETACHED.
The loss must stay finite when β·h = −1000 (F.logsigmoid, not log of sigmoid).""",
    dpo_solution, "minidpo/losses.py: dpo_loss (the loss itself: sigmoid_loss)", _dpo_cases, DPO_MISTAKES,
    detached=("chosen_rewards", "rejected_rewards"), train=train_dpo_loss,
    train_note="trains DPO --fast with your dpo_loss (a registered loss)")


# --- conservative-dpo-loss -------------------------------------------------------------------------------
def _cdpo_cases():
    return [
        Case("h = 0: ln 2 whatever ε", (_t([0.0]), 0.5, 0.1), (0,)),
        Case("ε = 0 is plain DPO", (_t([1.0, -2.0]), 0.5, 0.0), (0,)),
        Case("two margins, ε = 0.1", (_t([2.0, -1.0]), 0.5, 0.1), (0,)),
        Case("β·h = −1000 and +1000: each log σ term underflows once", (_t([-2000.0, 2000.0]), 0.5, 0.1), (0,)),
        Case("float64, ε = 0.25", (_t([3.0, -0.5, 0.0], torch.float64), 0.2, 0.25), (0,)),
    ]


CDPO_MISTAKES = (
    Mistake("smoothing-sign-flipped", "conservative DPO MIXES the two labels, −(1−ε)·log σ(βh) − ε·log σ(−βh); "
            "with + before the ε term it is robust DPO's numerator, an unbiased loss of another design.", "conservative",
            lambda h, b, e: -(1 - e) * F.logsigmoid(b * h) + e * F.logsigmoid(-b * h)),
    Mistake("smoothing-weights-swapped", "1 − ε weighs the label as given (σ(βh)) and ε the flipped one (σ(−βh)): "
            "swapped, the loss trusts the flipped label.", "conservative",
            lambda h, b, e: -e * F.logsigmoid(b * h) - (1 - e) * F.logsigmoid(-b * h)),
    Mistake("beta-outside-sigmoid", "β scales the margin inside each sigmoid, σ(β·h), not the loss outside it.",
            "conservative", lambda h, b, e: -(1 - e) * b * F.logsigmoid(h) - e * b * F.logsigmoid(-h)),
    Mistake("log-of-sigmoid", LOG_OF_SIGMOID, "dpo-loss",
            lambda h, b, e: -(1 - e) * torch.log(torch.sigmoid(b * h)) - e * torch.log(torch.sigmoid(-b * h))),
    Mistake("no-smoothing", "ε is the assumed rate of flipped labels: with ε > 0 the loss must include the flipped "
            "label's term, or it is plain DPO.", "conservative", lambda h, b, e: -F.logsigmoid(b * h)),
)

SMOOTHING = 0.1  # the ε of --train


def train_cdpo(run, learner, **_):
    """DPO --fast with label smoothing ε = 0.1: the learner's loss (a margin loss) against the library's."""
    beta, plain = run.settings(DPOConfig).beta, train.reference(run, "dpo")
    reference = train.announced(f"DPO --fast, the library's conservative DPO (β = {beta}, ε = {SMOOTHING})",
                                lambda: sweep.trained(run, "dpo", beta, label_smoothing=SMOOTHING))
    with train.temporary_loss(registered("exercise-conservative-dpo", learner, True,
                                         label_smoothing=0.0)) as name:
        yours = train.announced(f"DPO --fast with your conservative_dpo_loss (β = {beta}, ε = {SMOOTHING})",
                                lambda: sweep.trained(run, "dpo", beta, loss_type=name, label_smoothing=SMOOTHING))
        rows = [(f"DPO ε = {SMOOTHING}, the library's", sweep.evaluate(run, reference)),
                (f"DPO ε = {SMOOTHING}, your loss", sweep.evaluate(run, yours))]
    return [("DPO (ε = 0), for contrast", plain)] + rows


CONSERVATIVE_DPO = Exercise(
    "conservative-dpo-loss", "conservative_dpo_loss", "variant", "conservative",
    "conservative DPO: the DPO loss when a fraction ε of the labels may be flipped",
    ("h", "beta", "label_smoothing"), ("losses",),
    """If each label is flipped with probability ε, the expected DPO loss over the two readings is
    L = −(1 − ε)·log σ(β·h) − ε·log σ(−β·h)
(conservative DPO; ε = 0 is DPO itself). Its gradient weight σ(−βh) − ε vanishes at
βh = log((1 − ε)/ε): the margin stops growing there instead of running to infinity.

Inputs
  h                (B,) float32 or float64: the log-ratio margins of B pairs (as in dpo-loss).
  beta             a float > 0.
  label_smoothing  ε, a float in [0, 0.5).
Output
  (B,) in h's dtype: one loss per pair, differentiable w.r.t. h, finite for β·h = ±1000.""",
    losses.sigmoid_loss, "minidpo/losses.py: sigmoid_loss (its label_smoothing)", _cdpo_cases, CDPO_MISTAKES,
    train=train_cdpo, train_note=f"trains DPO --fast with ε = {SMOOTHING} through your loss, beside the library's")


EXERCISES = (SEQUENCE_LOGPS, BRADLEY_TERRY, DPO_LOSS, CONSERVATIVE_DPO)
