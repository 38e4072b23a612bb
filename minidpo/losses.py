"""The preference losses: DPO, its variants, and the Bradley–Terry reward-model loss. All in one file.

DPO (Rafailov et al. 2023, eq. 7) on one pair (x, y_w ≻ y_l):

    h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)]
    L = −log σ(β·h)

The implicit reward of a response is r̂(x, y) = β·log π(y|x)/π_ref(y|x) (eq. 5 rearranged), so
β·h = r̂_w − r̂_l and DPO is a Bradley–Terry loss on implicit rewards.

Two ways to register a loss, both selectable with `python -m minidpo dpo --loss-type NAME`:

  * the margin form, for a lecture: `fn(h, beta, **args)` returns per-example losses from the
    log-ratio margin h. DPO, IPO and hinge are three lines each:

        @register_margin_loss("my-loss")
        def my_loss(h, beta):
            return -F.logsigmoid(beta * h)

  * the record form, for everything else: `fn(record, **args)` reads a `PairRecord` (policy and
    reference log-probs of chosen and rejected, summed and per token, response lengths, β) and
    returns a `LossOutput` (per-example losses, and the rewards it wants logged). A loss that
    needs no reference model says `reference=False`; training then never runs the reference.

A loss's own hyperparameters are keyword arguments with defaults in the decorator
(`@register_loss("simpo", reference=False, gamma_beta_ratio=0.5)`); set them with
`--loss-arg gamma_beta_ratio=0.3`. `label_smoothing` is one of them, for the losses that use it.
Names, formulas and defaults follow TRL where TRL has the loss; differences are stated.
"""
from __future__ import annotations

import hashlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


# --- what a loss reads and returns ------------------------------------------------------------
@dataclass
class PairRecord:
    """One batch of B preference pairs, as a loss sees it. Sequence log-probs are sums over the
    response tokens (means with `average_logps`); per-token values are 0 outside the response."""
    chosen_logps: torch.Tensor                   # (B,) log π(y_w|x)
    rejected_logps: torch.Tensor                 # (B,) log π(y_l|x)
    beta: float
    ref_chosen_logps: torch.Tensor | None = None    # (B,) log π_ref(y_w|x); None without a reference
    ref_rejected_logps: torch.Tensor | None = None
    chosen_token_logps: torch.Tensor | None = None  # (B, T) log π(y_w,t | x, y_w,<t)
    rejected_token_logps: torch.Tensor | None = None
    chosen_mask: torch.Tensor | None = None         # (B, T) True at response tokens
    rejected_mask: torch.Tensor | None = None
    average_logps: bool = False                     # are chosen_logps/rejected_logps means already?

    # the quantities most losses are written in
    @property
    def chosen_lengths(self):
        return None if self.chosen_mask is None else self.chosen_mask.sum(-1)

    @property
    def rejected_lengths(self):
        return None if self.rejected_mask is None else self.rejected_mask.sum(-1)

    @property
    def chosen_logratios(self):
        """log π(y_w|x)/π_ref(y_w|x)."""
        return self.chosen_logps - self._reference("ref_chosen_logps")

    @property
    def rejected_logratios(self):
        return self.rejected_logps - self._reference("ref_rejected_logps")

    @property
    def margin(self):
        """h = log-ratio of chosen − log-ratio of rejected (DPO's logit, before β)."""
        return self.chosen_logratios - self.rejected_logratios

    def implicit_rewards(self):
        """(r̂_w, r̂_l) = β·log-ratios, detached: what DPO-family losses log as rewards/*."""
        return (self.beta * self.chosen_logratios).detach(), (self.beta * self.rejected_logratios).detach()

    def mean_logps(self):
        """(mean log-prob per token of y_w, of y_l): the length-normalised scores of SimPO and ORPO."""
        for name in ("chosen_lengths", "rejected_lengths"):
            lengths = getattr(self, name)
            if lengths is None:
                raise ValueError("this loss needs response lengths; pass per-token log-probs and lengths")
            if bool((lengths <= 0).any()):
                raise ValueError(f"a response has no tokens ({name} holds 0): nothing to score")
        if self.average_logps:
            return self.chosen_logps, self.rejected_logps
        return self.chosen_logps / self.chosen_lengths, self.rejected_logps / self.rejected_lengths

    def _reference(self, name):
        value = getattr(self, name)
        if value is None:
            raise ValueError("this loss needs reference log-probs, but the batch has none")
        return value


@dataclass
class UnpairedRecord:
    """One batch of B single completions with a label each (desirable or not), as KTO sees it, and a
    mismatched completion per example (another example's completion for this prompt), whose
    log-ratio estimates the policy's KL to the reference: KTO's reference point."""
    logps: torch.Tensor              # (B,) log π(y|x)
    ref_logps: torch.Tensor          # (B,) log π_ref(y|x)
    kl_logps: torch.Tensor           # (B,) log π(y'|x) of the mismatched completion y'
    ref_kl_logps: torch.Tensor       # (B,) log π_ref(y'|x)
    desirable: torch.Tensor          # (B,) bool
    beta: float

    @property
    def logratios(self):
        return self.logps - self.ref_logps


class LossOutput(NamedTuple):
    losses: torch.Tensor            # (B,) per example; the caller reduces
    chosen_rewards: torch.Tensor    # (B,) detached, logged as rewards/chosen
    rejected_rewards: torch.Tensor  # (B,) logged as rewards/rejected


@dataclass(frozen=True)
class Loss:
    name: str
    fn: Callable                 # fn(record, **args) -> LossOutput
    reference: bool              # does it read π_ref? (if not, training never runs the reference)
    args: dict = field(default_factory=dict)  # its hyperparameters and their defaults
    data: str = "pairs"          # "pairs" (a PairRecord) or "unpaired" (an UnpairedRecord: KTO)
    source: Callable | None = None  # the function as written (the margin form's, not its wrapper)

    def fingerprint(self) -> str:
        """A hash of the loss's source code: part of every training's provenance key, so a loss
        edited in a notebook cell (outside minidpo's files) is retrained, never reused."""
        fn = self.source or self.fn
        try:
            text = inspect.getsource(fn)
        except (OSError, TypeError):  # defined where no source is kept (an interactive prompt)
            text = fn.__code__.co_code.hex() + repr(fn.__code__.co_consts)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __call__(self, record: PairRecord, **args) -> LossOutput:
        return self.fn(record, **self.resolve(args))

    def resolve(self, args: dict) -> dict:
        """Defaults filled in; an argument this loss does not take is an error, never dropped."""
        unknown = sorted(set(args) - set(self.args))
        if unknown:
            takes = ", ".join(f"{k}={v}" for k, v in self.args.items()) or "no arguments"
            raise ValueError(f"loss {self.name!r} takes no {unknown[0]!r} (it takes: {takes})")
        return {**self.args, **args}


LOSSES: dict[str, Loss] = {}


def register_loss(name: str, reference: bool = True, data: str = "pairs", **args):
    """Register `fn(record, **args) -> LossOutput` under `name`; `args` are its defaults. A loss
    with data="unpaired" reads an `UnpairedRecord` (single completions with labels) instead."""
    def add(fn):
        LOSSES[name] = Loss(name, fn, reference, args, data, fn)
        return fn
    return add


def register_margin_loss(name: str, **args):
    """Register `fn(h, beta, **args) -> per-example losses` (the lecture form) under `name`;
    the rewards logged are the implicit rewards β·log-ratio."""
    def add(fn):
        LOSSES[name] = Loss(name, lambda record, **a: LossOutput(fn(record.margin, record.beta, **a),
                                                                 *record.implicit_rewards()), True, args, "pairs", fn)
        return fn
    return add


# --- DPO and the margin family ----------------------------------------------------------------
@register_margin_loss("sigmoid", label_smoothing=0.0)
def sigmoid_loss(h, beta, label_smoothing=0.0):
    """DPO, eq. 7: −log σ(β·h). With label_smoothing ε (conservative DPO) the label is assumed
    flipped with probability ε: −(1−ε)·log σ(β·h) − ε·log σ(−β·h). logsigmoid, never log(sigmoid):
    σ(β·h) underflows to 0 for very negative β·h and log(0) = −inf."""
    return (-(1 - label_smoothing) * F.logsigmoid(beta * h)
            - label_smoothing * F.logsigmoid(-beta * h))


@register_margin_loss("ipo")
def ipo_loss(h, beta):
    """IPO (Azar et al. 2023, eq. 17): (h − 1/(2β))². A squared loss has a finite target, so even
    a pair that is always won cannot push the log-ratio gap to infinity. Deliberate difference from
    TRL: h is built from SUMMED log-probs, as eq. 17 writes it; TRL's `ipo` divides each sequence's
    log-prob by its completion length first (so the same β means a per-token target there, a
    per-sequence one here; `--average-logps` gives TRL's form)."""
    return (h - 1 / (2 * beta)) ** 2


@register_margin_loss("hinge")
def hinge_loss(h, beta):
    """SLiC-style hinge (Zhao et al. 2023): relu(1 − β·h). Zero loss once the margin exceeds 1/β."""
    return torch.relu(1 - beta * h)


@register_margin_loss("robust", label_smoothing=0.1)
def robust_loss(h, beta, label_smoothing=0.1):
    """Robust DPO (Chowdhury et al. 2024, eq. 12), labels flipped with known rate ε: an unbiased
    loss, [−(1−ε)·log σ(β·h) + ε·log σ(−β·h)] / (1 − 2ε). TRL's `robust`; ε must be < 0.5."""
    return (-(1 - label_smoothing) * F.logsigmoid(beta * h)
            + label_smoothing * F.logsigmoid(-beta * h)) / (1 - 2 * label_smoothing)


@register_margin_loss("exo_pair", label_smoothing=1e-3)
def exo_pair_loss(h, beta, label_smoothing=1e-3):
    """EXO (Ji et al. 2024, eq. 16): the reverse KL from the model's pair distribution σ(β·h) to
    the labels (1−ε, ε): σ(βh)·[log σ(βh) − log(1−ε)] + σ(−βh)·[log σ(−βh) − log ε]. TRL's
    `exo_pair` (TRL replaces ε = 0 by 1e-3; here 1e-3 is the default and 0 is refused)."""
    if not 0 < label_smoothing < 1:
        raise ValueError("exo_pair needs 0 < label_smoothing < 1 (log ε)")
    z = beta * h
    return (torch.sigmoid(z) * (F.logsigmoid(z) - math.log(1 - label_smoothing))
            + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(label_smoothing)))


@register_margin_loss("discopop", tau=0.05)
def discopop_loss(h, beta, tau=0.05):
    """DiscoPOP (Chris Lu et al. 2024, eq. 5), a loss discovered by an LLM-driven search: a blend of
    the logistic loss and exp(−βh), mixed by σ(βh/τ). TRL's `discopop` (its discopop_tau = 0.05).
    Not monotone: at βh = 0 its slope is positive (≈ +0.78 for τ = 0.05), so it first decreases
    toward a small NEGATIVE margin; from there gradient descent may never cross to the right side."""
    z = beta * h
    mix = torch.sigmoid(z / tau)
    return -F.logsigmoid(z) * (1 - mix) + torch.exp(-z) * mix


# --- losses that read more than the margin ------------------------------------------------------
@register_loss("rpo", alpha=1.0)
def rpo_loss(record: PairRecord, alpha=1.0) -> LossOutput:
    """RPO (Pang et al. 2024, eq. 3): DPO plus α·NLL of the chosen response per token. DPO trains
    only the margin and lets log π(y_w) fall; the NLL term holds it up. (TRL: `rpo_alpha` added to
    any loss, with the NLL averaged over all chosen tokens of the batch; here per example.)"""
    chosen, _ = record.mean_logps()
    return LossOutput(sigmoid_loss(record.margin, record.beta) - alpha * chosen, *record.implicit_rewards())


@register_loss("dpop", lam=50.0)
def dpop_loss(record: PairRecord, lam=50.0) -> LossOutput:
    """DPO-Positive (Pal et al. 2024, "Smaug", eq. 3): −log σ(β·[h − λ·max(0, log π_ref(y_w)/π(y_w))]).
    The penalty is zero while the chosen log-ratio stays ≥ 0 and grows as soon as log π(y_w) falls
    below the reference: DPO's falling chosen log-prob is then paid for. λ = 50 as in the paper."""
    penalty = torch.clamp(-record.chosen_logratios, min=0)
    return LossOutput(-F.logsigmoid(record.beta * (record.margin - lam * penalty)), *record.implicit_rewards())


@register_loss("bco_pair")
def bco_pair_loss(record: PairRecord) -> LossOutput:
    """BCO, paired (Jung et al. 2024, eq. 11): a binary classifier of chosen vs rejected on the
    implicit reward, shifted by δ = the mean implicit reward: −log σ(r̂_w − δ) − log σ(−(r̂_l − δ)).
    Deliberate difference: TRL keeps δ as a running mean over batches; here δ is the batch's own
    mean (detached), so the loss is a function of the batch alone."""
    chosen, rejected = record.beta * record.chosen_logratios, record.beta * record.rejected_logratios
    delta = torch.cat([chosen, rejected]).mean().detach()
    return LossOutput(-F.logsigmoid(chosen - delta) - F.logsigmoid(-(rejected - delta)), *record.implicit_rewards())


@register_loss("sppo_hard")
def sppo_hard_loss(record: PairRecord) -> LossOutput:
    """SPPO with hard labels (Wu et al. 2024, eq. 4.7 with P = 1 for the winner, 0 for the loser):
    each log-ratio regressed to its own target, (ρ_w − 1/(2β))² + (ρ_l + 1/(2β))². TRL's `sppo_hard`."""
    target = 0.5 / record.beta
    losses = (record.chosen_logratios - target) ** 2 + (record.rejected_logratios + target) ** 2
    return LossOutput(losses, *record.implicit_rewards())


@register_loss("nca_pair")
def nca_pair_loss(record: PairRecord) -> LossOutput:
    """NCA, paired (Chen et al. 2024, eq. 10): absolute, not relative, likelihoods of the implicit
    rewards: −log σ(r̂_w) − ½·log σ(−r̂_w) − ½·log σ(−r̂_l). TRL's `nca_pair`."""
    chosen, rejected = record.beta * record.chosen_logratios, record.beta * record.rejected_logratios
    return LossOutput(-F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected),
                      *record.implicit_rewards())


@register_loss("apo_zero")
def apo_zero_loss(record: PairRecord) -> LossOutput:
    """APO-zero (D'Oosterlinck et al. 2024, eq. 7), for chosen responses better than the model's own:
    push the chosen reward up and the rejected down, each anchored at 0:
    [1 − σ(r̂_w)] + σ(r̂_l). TRL's `apo_zero`."""
    chosen, rejected = record.beta * record.chosen_logratios, record.beta * record.rejected_logratios
    return LossOutput(1 - torch.sigmoid(chosen) + torch.sigmoid(rejected), *record.implicit_rewards())


@register_loss("apo_down")
def apo_down_loss(record: PairRecord) -> LossOutput:
    """APO-down (D'Oosterlinck et al. 2024, eq. 8), for chosen responses worse than the model's own:
    push both down, the rejected more: σ(r̂_w) + [1 − σ(r̂_w − r̂_l)]. TRL's `apo_down`."""
    chosen = record.beta * record.chosen_logratios
    return LossOutput(torch.sigmoid(chosen) + 1 - torch.sigmoid(record.beta * record.margin),
                      *record.implicit_rewards())


@register_loss("aot", label_smoothing=0.0)
def aot_loss(record: PairRecord, label_smoothing=0.0) -> LossOutput:
    """AOT, paired (Melnyk et al. 2024): distributional alignment by optimal transport in one
    dimension, which is sorting. The policy's and the reference's log-odds log π(y_w)/π(y_l) are
    sorted separately across the batch, and the sorted differences go through DPO's loss; so the
    loss of one pair depends on the whole batch. TRL's `aot`."""
    policy, _ = torch.sort(record.chosen_logps - record.rejected_logps, dim=0)
    reference, _ = torch.sort(record._reference("ref_chosen_logps") - record._reference("ref_rejected_logps"), dim=0)
    return LossOutput(sigmoid_loss(policy - reference, record.beta, label_smoothing), *record.implicit_rewards())


@register_loss("aot_pair", label_smoothing=0.0)
def aot_pair_loss(record: PairRecord, label_smoothing=0.0) -> LossOutput:
    """AOT, unpaired (Melnyk et al. 2024): the chosen log-ratios and the rejected log-ratios are
    sorted separately across the batch, and the sorted differences go through DPO's loss (the
    chosen distribution should dominate the rejected one). TRL's `aot_pair`."""
    chosen, _ = torch.sort(record.chosen_logratios, dim=0)
    rejected, _ = torch.sort(record.rejected_logratios, dim=0)
    return LossOutput(sigmoid_loss(chosen - rejected, record.beta, label_smoothing), *record.implicit_rewards())


@register_loss("kto", data="unpaired", desirable_weight=1.0, undesirable_weight=1.0)
def kto_loss(record: UnpairedRecord, desirable_weight=1.0, undesirable_weight=1.0) -> LossOutput:
    """KTO (Ethayarajh et al. 2024, eq. 8), from single labelled completions: a prospect-theory
    value of the implicit reward r = log π(y|x)/π_ref(y|x) against a reference point z0, the
    (detached, clamped ≥ 0) mean log-ratio of mismatched completions, an estimate of KL(π ‖ π_ref):
        desirable    λ_D·(1 − σ(β·(r − z0)))        undesirable   λ_U·(1 − σ(β·(z0 − r)))
    TRL's KTOTrainer (`desirable_weight`, `undesirable_weight`). y′ is a completion of ANOTHER prompt,
    as in the paper and TRL (which shifts completions within a batch); here the mismatch is fixed
    once over the data set (`preferences.mismatched_completions`). Returns the implicit rewards β·r
    of desirable examples as `chosen_rewards` and of undesirable ones as `rejected_rewards`
    (different lengths)."""
    z0 = (record.kl_logps - record.ref_kl_logps).mean().clamp(min=0).detach()
    r = record.logratios
    good = record.desirable
    losses = torch.where(good, desirable_weight * (1 - torch.sigmoid(record.beta * (r - z0))),
                         undesirable_weight * (1 - torch.sigmoid(record.beta * (z0 - r))))
    rewards = (record.beta * r).detach()
    return LossOutput(losses, rewards[good], rewards[~good])


# --- reference-free losses ---------------------------------------------------------------------
def _mean_logp_rewards(record: PairRecord):
    """β·(mean log-prob per token): what TRL logs as rewards for its reference-free losses."""
    chosen, rejected = record.mean_logps()
    return (record.beta * chosen).detach(), (record.beta * rejected).detach()


@register_loss("simpo", reference=False, gamma_beta_ratio=0.5, label_smoothing=0.0)
def simpo_loss(record: PairRecord, gamma_beta_ratio=0.5, label_smoothing=0.0) -> LossOutput:
    """SimPO (Meng et al. 2024, eq. 6): no reference; the reward is the mean log-prob per token
    (length-normalised), with a target margin γ: −log σ(β/|y_w|·log π(y_w) − β/|y_l|·log π(y_l) − γ).
    TRL's CPO `simpo`, with γ given as γ/β (`gamma_beta_ratio`, default 0.5)."""
    chosen, rejected = record.mean_logps()
    logits = (chosen - rejected) - gamma_beta_ratio
    return LossOutput(sigmoid_loss(logits, record.beta, label_smoothing), *_mean_logp_rewards(record))


@register_loss("orpo", reference=False)
def orpo_loss(record: PairRecord) -> LossOutput:
    """ORPO (Hong et al. 2024, eqs. 6–7): no reference; SFT on the chosen response plus λ times an
    odds-ratio term, L = NLL(y_w)/|y_w| − λ·log σ(log odds(y_w) − log odds(y_l)), with
    odds(y) = P/(1 − P), P = exp(mean log-prob per token). λ is β here, as in TRL's ORPO (0.1)."""
    chosen, rejected = record.mean_logps()
    # log odds = log P − log(1 − P), with log(1 − P) = log1p(−exp(log P)) (stable for P < 1)
    log_odds = (chosen - rejected) - (torch.log1p(-torch.exp(chosen)) - torch.log1p(-torch.exp(rejected)))
    return LossOutput(-chosen - record.beta * F.logsigmoid(log_odds), *_mean_logp_rewards(record))


@register_loss("sft", reference=False)
def preferred_ft_loss(record: PairRecord) -> LossOutput:
    """Preferred-FT (the DPO paper's baseline, §6): supervised fine-tuning on the chosen responses
    only, NLL per token of y_w; y_l is ignored. TRL's `sft` loss type."""
    chosen, _ = record.mean_logps()
    return LossOutput(-chosen, *_mean_logp_rewards(record))


@register_loss("unlikelihood", reference=False, alpha=1.0)
def unlikelihood_loss(record: PairRecord, alpha=1.0) -> LossOutput:
    """Unlikelihood (Welleck et al. 2019; the DPO paper's baseline, §6): raise log π(y_w) and push
    each token of y_l down with the unlikelihood term −log(1 − π(y_l,t | x, y_l,<t)), both per token:
    NLL(y_w)/|y_w| + α·Σ_t −log(1 − π(y_l,t))/|y_l|. (Not in TRL.)"""
    chosen, _ = record.mean_logps()
    token = record.rejected_token_logps
    if token is None:
        raise ValueError("unlikelihood needs the per-token log-probs of the rejected response")
    # log(1 − p) = log(−expm1(log p)); clamped so a token with p → 1 costs a large, finite amount
    unlikely = -torch.log(-torch.expm1(token.clamp(max=-1e-6)))
    unlikely = (unlikely * record.rejected_mask).sum(-1) / record.rejected_lengths
    return LossOutput(-chosen + alpha * unlikely, *_mean_logp_rewards(record))


# --- the functional API ------------------------------------------------------------------------
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1, label_smoothing: float = 0.0, loss_type: str = "sigmoid",
             reference_free: bool = False, **loss_args):
    """Per-example losses and the logged rewards from four sequence log-probs, shape (B,) each.

    Returns (losses (B,), chosen_rewards (B,), rejected_rewards (B,)); nothing is averaged, so the
    caller decides how to reduce. reference_free=True sets the reference log-probs to 0. Losses that
    need per-token log-probs or lengths are trained through `dpo.pair_record` instead."""
    loss = get_loss(loss_type)
    if reference_free:
        ref_chosen_logps = torch.zeros_like(ref_chosen_logps)
        ref_rejected_logps = torch.zeros_like(ref_rejected_logps)
    record = PairRecord(policy_chosen_logps, policy_rejected_logps, beta, ref_chosen_logps, ref_rejected_logps)
    return tuple(loss(record, **loss_arguments(loss_type, label_smoothing, loss_args)))


def get_loss(loss_type: str) -> Loss:
    if loss_type not in LOSSES:
        raise ValueError(f"unknown loss_type {loss_type!r}; registered: {', '.join(sorted(LOSSES))}")
    return LOSSES[loss_type]


def loss_arguments(loss_type: str, label_smoothing: float = 0.0, loss_args: dict | None = None) -> dict:
    """The arguments a loss is called with: its defaults, then `loss_args`; `label_smoothing` (the
    `--label-smoothing` flag) only for losses that take it: a non-zero value for one that does not
    is an error, not silently ignored."""
    loss = get_loss(loss_type)
    args = dict(loss_args or {})
    if label_smoothing:
        if "label_smoothing" not in loss.args:
            raise ValueError(f"loss {loss_type!r} takes no label smoothing; --label-smoothing works with "
                             + ", ".join(n for n, l in sorted(LOSSES.items()) if "label_smoothing" in l.args))
        args.setdefault("label_smoothing", label_smoothing)
    return loss.resolve(args)


def dpo_gradient_weight(chosen_rewards, rejected_rewards):
    """The paper's gradient (sec. 4, "What does the DPO update do?"):

        ∇L = −β · σ(r̂_l − r̂_w) · [∇log π(y_w|x) − ∇log π(y_l|x)]

    σ(r̂_l − r̂_w) is large when the implicit reward ranks the pair wrongly and ~0 once it ranks it
    right by a wide margin: DPO weighs each example by how wrong it currently is."""
    return torch.sigmoid(rejected_rewards - chosen_rewards)


def bradley_terry_loss(chosen_scores, rejected_scores):
    """Reward-model loss: −log σ(r(x, y_w) − r(x, y_l)) per pair (Bradley & Terry 1952)."""
    return -F.logsigmoid(chosen_scores - rejected_scores)


def preference_metrics(losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps,
                       prefix: str = "") -> dict:
    """The metric names of the DPO reference implementation and TRL, as floats."""
    return {f"{prefix}loss": losses.mean().item(),
            f"{prefix}rewards/chosen": chosen_rewards.mean().item(),
            f"{prefix}rewards/rejected": rejected_rewards.mean().item(),
            f"{prefix}rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
            f"{prefix}rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
            f"{prefix}logps/chosen": chosen_logps.detach().mean().item(),
            f"{prefix}logps/rejected": rejected_logps.detach().mean().item()}
