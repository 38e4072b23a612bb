"""The bridge: from the exact lab, where DPO and RLHF reach one policy, to the default run, where they
do not — the theorem's conditions broken one at a time, both roads measured at every rung.

The theorem (DPO paper §5, combining Lemma 2 with Theorem 1). Bradley–Terry sees a reward only through
differences r(x, y1) − r(x, y2) within a prompt, and only between responses that pairs connect: two
rewards that differ by a constant per prompt are one "reward class", and (Lemma 2) they give the same
optimal policy. Every class can be represented by a reward of the form β·log π(y|x)/π_ref(y|x)
(Theorem 1; its proof adds that the representative is unique), provided the policy class is rich
enough to express π*(r) = π_ref·exp(r/β)/Z for every r. Then minimising the DPO loss over the policy
is maximising the Bradley–Terry likelihood over reward classes, and its minimiser is π*(r_φ) for the
Bradley–Terry fit r_φ: the very policy RLHF's second step computes from r_φ (r_φ the fitted reward,
r̂ = β·log π/π_ref a policy's implicit one, as in the lessons). Conditions the proof uses, in the
lessons' order: (1) pairs that link every response (a strongly connected comparison graph), (2) a
tabular (or rich enough) policy, (3) a reward model that can be any function and is fitted to its
maximum, (4) both objectives optimised to their optimum, (5) the same data and objective (β, π_ref).

| rung | what changes from the rung above                                            | |
|---|---|---|
| 0 | the exact lab on the enumerable world's linked responses, tabular, solved to the optimum | `rung0_theorem` |
| 1 | all 40 responses: some are in no pair (still tabular)                          | `rung1_unlinked` |
| 2 | the policy is the enumerable GPT (shared parameters); reward tabular, RL exact  | `rung2_gpt_policy` |
| 3 | the reward model is a GPT too (our `RewardModel`), RL still exact              | `rung3_gpt_reward` |
| 4 | the stages' own optimisers and step counts; REINFORCE sampled                  | `rung4_budgets` |
| 5 | the default toy-world run: offline pairs vs on-policy RL; online DPO beside it  | `bridge_toy.rung5_toy_world` |

Rungs 0–4 live in the enumerable world (`bridge_world`): each returns a `Rung` (the two roads'
policies, the reward the RLHF road used, each road's path of (KL, gold) along its optimisation), and
`measure` turns it into numbers that are sums over the 40 responses. Both roads use the DPO stage's β
and the reward model's raw scale, so they optimise the same objective (the pipeline's RLHF rescales
its reward and uses β = 0.05: another point on the same frontier, which is why rung 5 compares the
roads at matched KL). One seed draws one set of pairs, used by every rung; the study runs 3 seeds.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .. import bandit as B
from ..data import collate, row
from ..dpo import DPOConfig, pair_logps, run_dpo
from ..harness import compare as C
from ..losses import bradley_terry_loss, dpo_loss
from ..reward_model import RewardModel, RMConfig
from ..rlhf import RLHFConfig, kl_penalised_advantages, reinforce_loss
from ..training import lr_at, make_optimizer, set_lr
from .bridge_world import WORDS, World, make_world
from .microscope import END, MAX_LEN, PROMPT, all_responses, exact_logps

BETA = DPOConfig().beta      # both roads, every enumerable rung: the DPO stage's β
N_PAIRS = 200                # pairs drawn from the reference per seed (those in the linked set are kept)
EXACT_STEPS, FAST_EXACT_STEPS = 1000, 300   # full-batch Adam steps of the GPT rungs' exact solves (300 already
                                            # reach DPO's tabular floor to 5 digits)
EXACT_LR, OTHER_LR = 3e-3, 1e-2             # their step size, and rung 2's second DPO solve's
CENTER_WEIGHT = RMConfig().center_weight    # the reward model's own term that pins its constant


@dataclass
class Rung:
    """What one rung produced: policies as log-probabilities over this rung's responses."""
    rung: int
    name: str
    ref: torch.Tensor            # log π_ref
    dpo: torch.Tensor            # the DPO road's policy
    rlhf: torch.Tensor           # the RLHF road's policy
    reward: torch.Tensor         # r_φ, the reward the RLHF road maximised
    gold: torch.Tensor           # r* of the same responses
    unseen: list[int]            # responses no pair mentions
    beta: float = BETA
    paths: dict = field(default_factory=dict)   # road -> [(KL to ref, gold)] along its optimisation
    extra: dict = field(default_factory=dict)   # what this rung shows besides the common numbers

    @property
    def optimum(self) -> torch.Tensor:
        """π*(r_φ) = π_ref·exp(r_φ/β)/Z: what both roads would reach under the theorem (DPO eq. 4)."""
        return B.optimal_logp(self.ref, self.reward, self.beta)


def point(logp, ref, gold) -> tuple[float, float]:
    """(KL(π ‖ π_ref), E_π[r*]) of one policy: sums over the responses."""
    return B.kl(logp, ref).item(), (logp.exp() * gold).sum().item()


def measure(r: Rung) -> dict:
    """The numbers every rung reports (every one a sum over this rung's responses)."""
    roads = {"dpo": r.dpo, "rlhf": r.rlhf, "opt": r.optimum, "ref": r.ref}
    out = {"rung": r.rung, "name": r.name, "responses": len(r.ref), "unseen_responses": len(r.unseen),
           "tv_dpo_rlhf": B.tv(r.dpo, r.rlhf), "kl_dpo_rlhf": B.kl(r.dpo, r.rlhf).item()}
    for road in ("dpo", "rlhf"):
        out[f"tv_{road}_opt"] = B.tv(roads[road], roads["opt"])
        out[f"kl_{road}_opt"] = B.kl(roads[road], roads["opt"]).item()
    for road, logp in roads.items():
        kl, gold = point(logp, r.ref, r.gold)
        out[f"gold_{road}"] = gold
        if road != "ref":
            out[f"kl_{road}"] = kl
        out[f"unseen_mass_{road}"] = logp.exp()[r.unseen].sum().item() if r.unseen else 0.0
    out["paths"] = {road: [list(p) for p in path] for road, path in r.paths.items()}
    out["probabilities"] = {road: logp.exp().tolist() for road, logp in roads.items()}
    return {**out, **r.extra}


# --- the pieces the rungs share --------------------------------------------------------------------
def newton(x: torch.Tensor, loss, steps: int = 4) -> torch.Tensor:
    """Polish a minimiser that L-BFGS left at ~1e-8 (its stopping rule watches the loss, which is flat
    to 1e-16 there) with Newton steps: δ = −H⁺∇, the least-squares solution, so a direction the loss
    does not see (a constant added to every logit) is left as it is."""
    shape, flat = x.shape, x.detach().flatten()
    f = lambda v: loss(v.view(shape))  # noqa: E731
    for _ in range(steps):
        grad = torch.autograd.functional.jacobian(f, flat)
        hess = torch.autograd.functional.hessian(f, flat)
        flat = flat - torch.linalg.lstsq(hess, grad.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)
    return flat.view(shape)


def fit_reward_exactly(pairs, shape) -> torch.Tensor:
    """The tabular Bradley–Terry fit r_φ to the last digits (`bandit.fit_reward`, then `newton`), centred."""
    x, w, l = pairs
    return B.centred(newton(B.fit_reward(pairs, shape), lambda r: bradley_terry_loss(r[x, w], r[x, l]).mean()))


def dpo_exactly(ref, pairs, beta, start=None) -> torch.Tensor:
    """DPO on tabular logits (from the reference's, or `start`) to the last digits: `bandit.solve_dpo`'s
    L-BFGS, then `newton`. Returns log π_DPO."""
    x, w, l = pairs

    def loss(theta):
        logp = F.log_softmax(theta, -1)
        return dpo_loss(logp[x, w], logp[x, l], ref[x, w], ref[x, l], beta)[0].mean()
    return F.log_softmax(newton(B.solve_dpo(ref, pairs, beta, start=start), loss), -1)


def rl_exactly(ref, reward, beta) -> torch.Tensor:
    """max J on tabular logits to the last digits: `bandit.solve_rl_exact`, then `newton`. Returns log π_RLHF."""
    loss = lambda theta: -B.rl_objective(F.log_softmax(theta, -1), ref, reward, beta)  # noqa: E731
    return F.log_softmax(newton(B.solve_rl_exact(ref, reward, beta), loss), -1)


def tabular_reward(world: World) -> torch.Tensor:
    """The tabular reward model fitted to its maximum: Bradley–Terry maximum likelihood over the linked
    responses (unique up to a constant there; centred to mean 0), and 0 — that same mean — for the
    responses no pair mentions: where no gradient reaches, a table started at zero stays at zero."""
    index = {y: i for i, y in enumerate(world.linked)}
    pairs = (torch.zeros(len(world.pairs), dtype=torch.long), torch.tensor([index[w] for w, _ in world.pairs]),
             torch.tensor([index[l] for _, l in world.pairs]))
    r = torch.zeros(len(world.gold), dtype=B.DT)
    r[world.linked] = fit_reward_exactly(pairs, (1, len(world.linked)))[0]
    return r


def dpo_pair_loss(logp, world: World, beta: float = BETA) -> torch.Tensor:
    """The DPO loss (`losses.dpo_loss`) of all the world's pairs, from log-probs over the 40 responses."""
    w, l, ref = world.winners, world.losers, world.ref_logp
    return dpo_loss(logp[w], logp[l], ref[w], ref[l], beta)[0].mean()


def _path_steps(steps: int) -> set[int]:
    return {0, steps} | {2 ** k for k in range(20) if 2 ** k < steps}


def gpt_solve(world: World, objective, steps: int, lr: float = EXACT_LR):
    """A copy of the reference GPT trained full-batch (Adam) to minimise `objective(log π over every
    response)`; returns (the trained model, its path of (KL, gold) at steps 0, 1, 2, 4, ...)."""
    policy = copy.deepcopy(world.reference).train()
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    path, record = [], _path_steps(steps)
    for step in range(steps + 1):
        logp = exact_logps(policy)
        if step in record:
            path.append(point(logp.detach(), world.ref_logp, world.gold))
        if step == steps:
            return policy.eval(), path
        loss = objective(logp)
        opt.zero_grad()
        loss.backward()
        opt.step()


_DPO_SOLVES: dict = {}


def gpt_dpo(world: World, beta: float, steps: int) -> tuple:
    """DPO over the GPT's weights (`gpt_solve`, deterministic): rungs 2 and 3 share this road, so one
    process solves it once per (seed, β, steps). Returns (log π_DPO, its path)."""
    key = (world.seed, len(world.pairs), beta, steps)
    if key not in _DPO_SOLVES:
        _DPO_SOLVES[key] = solved_logps(gpt_solve(world, lambda logp: dpo_pair_loss(logp, world, beta), steps))
    return _DPO_SOLVES[key]


def solved_logps(solved) -> tuple:
    """(exact log-probs of the solved model, its path)."""
    model, path = solved
    with torch.no_grad():
        return exact_logps(model), path


def rl_objective(reward, world: World, beta: float = BETA):
    """−J(π) = −(E_π[r_φ] − β·KL(π ‖ π_ref)), exactly: the RLHF objective as a loss."""
    return lambda logp: -B.rl_objective(logp, world.ref_logp, reward, beta)


def response_rows() -> list:
    return [row([PROMPT], y) for y in all_responses()]


def rm_rewards(rm: RewardModel) -> torch.Tensor:
    """The reward model's raw score of every response (no normalisation: see the module docstring)."""
    ids, mask = collate(response_rows(), END)
    return rm.raw(ids, mask)


def reward_model_from(world: World) -> RewardModel:
    """Our reward-model class on the enumerable GPT: backbone from the reference, head at zero."""
    rm = RewardModel(world.reference.config).double()
    rm.backbone.load_state_dict(world.reference.state_dict())
    return rm


# --- rungs 0 to 4 ----------------------------------------------------------------------------------------
def rung0_theorem(world: World, beta: float = BETA) -> Rung:
    """The exact lab on the responses the pairs link (π_ref renormalised to them): tabular policy,
    tabular reward fitted to its maximum, both roads solved to the last digits (`minidpo.bandit`'s
    L-BFGS, then Newton steps)."""
    keep = world.linked
    index = {y: i for i, y in enumerate(keep)}
    ref = F.log_softmax(world.ref_logp[keep], -1)
    pairs = (torch.zeros(len(world.pairs), dtype=torch.long), torch.tensor([index[w] for w, _ in world.pairs]),
             torch.tensor([index[l] for _, l in world.pairs]))
    r_hat = fit_reward_exactly(pairs, (1, len(keep)))
    dpo, rlhf = dpo_exactly(ref[None], pairs, beta)[0], rl_exactly(ref[None], r_hat, beta)[0]
    r_hat = r_hat[0]
    gold = world.gold[keep]
    return Rung(0, "the theorem: tabular, every response linked, solved to the optimum", ref, dpo, rlhf, r_hat, gold,
                [], beta, {"dpo": [point(dpo, ref, gold)], "rlhf": [point(rlhf, ref, gold)]})


def rung1_unlinked(world: World, beta: float = BETA, other_start_seed: int = 1, start_noise: float = 1.0) -> Rung:
    """All 40 responses, the same pairs: some responses are in none. DPO's loss does not depend on
    their logits (log π(y_w) − log π(y_l) = θ_w − θ_l: the normaliser cancels), so its minimiser is
    whatever the start left there. Shown twice: the gradient on an unlinked logit, and DPO from a
    second start (the reference's logits plus Gaussian noise of scale `start_noise`), which reaches the
    same loss with another policy."""
    ref = world.ref_logp
    pairs = (torch.zeros(len(world.pairs), dtype=torch.long), world.winners, world.losers)
    r_hat = tabular_reward(world)
    dpo, rlhf = dpo_exactly(ref[None], pairs, beta)[0], rl_exactly(ref[None], r_hat[None], beta)[0]
    theta = ref.clone().requires_grad_(True)
    dpo_pair_loss(F.log_softmax(theta, -1), world, beta).backward()
    g = torch.Generator().manual_seed(other_start_seed)
    start = ref + start_noise * torch.randn(len(ref), generator=g, dtype=B.DT)
    other = dpo_exactly(ref[None], pairs, beta, start=start[None])[0]
    extra = {"grad_unlinked_max": theta.grad[world.unlinked].abs().max().item() if world.unlinked else 0.0,
             "grad_linked_max": theta.grad[world.linked].abs().max().item(),
             "dpo_loss": dpo_pair_loss(dpo, world, beta).item(),
             "dpo_loss_other_start": dpo_pair_loss(other, world, beta).item(),
             "tv_dpo_other_start": B.tv(dpo, other), "tv_dpo_other_start_rlhf": B.tv(other, rlhf),
             "unseen_mass_dpo_other_start": other.exp()[world.unlinked].sum().item()}
    return Rung(1, "responses no pair links (still tabular)", ref, dpo, rlhf, r_hat, world.gold, world.unlinked,
                beta, {"dpo": [point(dpo, ref, world.gold)], "rlhf": [point(rlhf, ref, world.gold)]}, extra)


def rung2_gpt_policy(world: World, beta: float = BETA, steps: int = EXACT_STEPS) -> Rung:
    """The policy is the enumerable GPT: one set of weights for all 40 responses. DPO minimises its
    loss over those weights, so what it does to the pairs' responses moves the others too; RLHF keeps
    the tabular reward and maximises J over the same weights, exactly (sums over every response).
    DPO is solved twice, at two step sizes: both reach the loss's floor (the tabular minimum), and
    where they leave the responses no pair mentions is the optimiser's choice, not the loss's."""
    r_hat = tabular_reward(world)
    dpo, dpo_path = gpt_dpo(world, beta, steps)
    rlhf, rlhf_path = solved_logps(gpt_solve(world, rl_objective(r_hat, world, beta), steps))
    other, _ = solved_logps(gpt_solve(world, lambda logp: dpo_pair_loss(logp, world, beta), steps, OTHER_LR))
    tabular_floor = dpo_pair_loss(B.optimal_logp(world.ref_logp, r_hat, beta), world, beta).item()
    extra = {"dpo_loss": dpo_pair_loss(dpo, world, beta).item(), "dpo_loss_floor": tabular_floor,
             "dpo_loss_other_lr": dpo_pair_loss(other, world, beta).item(), "other_lr": OTHER_LR,
             "tv_dpo_other_lr": B.tv(dpo, other), "tv_dpo_other_lr_rlhf": B.tv(other, rlhf),
             "unseen_mass_dpo_other_lr": other.exp()[world.unlinked].sum().item(),
             "kl_dpo_other_lr": B.kl(other, world.ref_logp).item(),
             "gold_dpo_other_lr": (other.exp() * world.gold).sum().item(),
             **implicit_reward_fit(dpo, world, beta)}
    return Rung(2, "the policy is a GPT (shared parameters)", world.ref_logp, dpo, rlhf, r_hat, world.gold,
                world.unlinked, beta, {"dpo": dpo_path, "rlhf": rlhf_path}, extra)


def implicit_reward_fit(dpo, world: World, beta: float) -> dict:
    """How DPO's implicit reward β·log π/π_ref matches the gold reward on the responses no pair
    mentions (correlation across them): what shared parameters guessed there."""
    implicit = beta * (dpo - world.ref_logp)
    return {"implicit_gold_corr_unseen": _corr(implicit[world.unlinked], world.gold[world.unlinked])}


def _corr(a: torch.Tensor, b: torch.Tensor) -> float | None:
    if len(a) < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return None
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def gpt_reward(world: World, steps: int = EXACT_STEPS, lr: float = 1e-3) -> torch.Tensor:
    """Our `RewardModel` fitted full-batch to its maximum: Bradley–Terry plus the class's small
    centring term, Adam; returns its raw score of all 40 responses."""
    rm = reward_model_from(world).train()
    opt = torch.optim.Adam(rm.parameters(), lr=lr)
    w, l = world.winners, world.losers
    for _ in range(steps):
        r = rm_rewards(rm)
        loss = bradley_terry_loss(r[w], r[l]).mean() + CENTER_WEIGHT * ((r[w] + r[l]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rm_rewards(rm.eval()).detach()


def rung3_gpt_reward(world: World, beta: float = BETA, steps: int = EXACT_STEPS) -> Rung:
    """The reward model is our GPT reward-model class too, fitted to the same pairs; RL exact on it.
    DPO's road is rung 2's. Two function classes fitted to the same pairs: which one guesses the
    unseen responses' rewards the way the gold reward has them?"""
    r_gpt = gpt_reward(world, steps)
    dpo, dpo_path = gpt_dpo(world, beta, steps)
    rlhf, rlhf_path = solved_logps(gpt_solve(world, rl_objective(r_gpt, world, beta), steps))
    unseen = world.unlinked
    extra = {"reward_gold_corr_unseen": _corr(r_gpt[unseen], world.gold[unseen]),
             "reward_gold_corr_linked": _corr(r_gpt[world.linked], world.gold[world.linked]),
             **implicit_reward_fit(dpo, world, beta)}
    return Rung(3, "the reward model is a GPT too", world.ref_logp, dpo, rlhf, r_gpt, world.gold, unseen, beta,
                {"dpo": dpo_path, "rlhf": rlhf_path}, extra)


def budget_pairs(world: World, fast: bool) -> list[tuple[int, int]]:
    """The kept pairs repeated to the pipeline's number of training pairs (PrefsConfig: 8 prompts
    per training film, 350 films: 2,800), so the DPO and reward-model stages take their default
    run's number of steps (2 epochs of 32 pairs: 176)."""
    from ..preferences import PrefsConfig
    from ..world import split_titles
    n = (PrefsConfig.fast() if fast else PrefsConfig()).train_repeats * len(split_titles()[0])
    return [world.pairs[i % len(world.pairs)] for i in range(n)]


def stage_dpo(world: World, beta: float, seed: int, fast: bool = False):
    """The DPO stage's own loop (`dpo.run_dpo`) with its settings (AdamW, warm-up and cosine schedule,
    batches of 32 pairs, 2 epochs, clipping) on the tiny GPT; the exact (KL, gold) after every step."""
    responses = all_responses()
    cfg = (DPOConfig.fast if fast else DPOConfig)(beta=beta, seed=seed)
    rows = [(row([PROMPT], responses[w]), row([PROMPT], responses[l])) for w, l in budget_pairs(world, fast)]
    val = [(row([PROMPT], responses[w]), row([PROMPT], responses[l])) for w, l in world.pairs]
    ref_rows, ref_val = pair_logps(world.reference, rows, END, False), pair_logps(world.reference, val, END, False)
    policy = copy.deepcopy(world.reference).train()
    torch.manual_seed(seed)
    path = [point(world.ref_logp, world.ref_logp, world.gold)]

    def on_step(step, model):  # after every update: the exact point of the policy now
        with torch.no_grad():
            path.append(point(exact_logps(model).detach(), world.ref_logp, world.gold))
    out = run_dpo(policy, cfg, rows, ref_rows, val, ref_val, END, quiet=True, on_step=on_step)
    return exact_logps(policy.eval()).detach(), path, {"dpo_steps": out["steps"], "dpo_config": asdict(cfg)}


def stage_reward_model(world: World, seed: int, fast: bool = False):
    """The reward-model stage's settings (RMConfig: AdamW, warm-up and cosine, batches of 32 pairs,
    2 epochs, the centring term, clipping) on our `RewardModel` over the tiny GPT; its raw scores."""
    import random
    cfg = (RMConfig.fast if fast else RMConfig)(seed=seed)
    pairs = budget_pairs(world, fast)
    torch.manual_seed(seed)
    rm = reward_model_from(world).train()
    opt = make_optimizer(rm, cfg.lr, cfg.weight_decay)
    order_rng, total = random.Random(seed), cfg.epochs * -(-len(pairs) // cfg.batch_size)
    step = 0
    for _ in range(cfg.epochs):
        order = list(range(len(pairs)))
        order_rng.shuffle(order)
        for b in range(0, len(order), cfg.batch_size):
            batch = [pairs[i] for i in order[b:b + cfg.batch_size]]
            set_lr(opt, lr_at(step, total, cfg.lr, cfg.warmup))
            step += 1
            r = rm_rewards(rm)
            w, l = torch.tensor([p[0] for p in batch]), torch.tensor([p[1] for p in batch])
            loss = bradley_terry_loss(r[w], r[l]).mean() + cfg.center_weight * ((r[w] + r[l]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
            opt.step()
    return rm_rewards(rm.eval()).detach(), {"reward_model_steps": step, "reward_model_config": asdict(cfg)}


@torch.no_grad()
def _sample(policy, n: int, g: torch.Generator) -> torch.Tensor:
    index = {tuple(y): i for i, y in enumerate(all_responses())}
    return torch.tensor([index[tuple(y)] for y in policy.eval().generate([[PROMPT]] * n, MAX_LEN, 1.0, stop_id=END,
                                                                          generator=g)])


def stage_reinforce(world: World, reward: torch.Tensor, beta: float, seed: int, fast: bool = False):
    """The REINFORCE stage's settings (RLHFConfig: 150 steps of 16 prompts × 4 samples, AdamW at 3e-4,
    clipping) and its pieces (`kl_penalised_advantages`, `reinforce_loss`), sampled from the tiny GPT
    on its one prompt; the exact (KL, gold) after every step."""
    cfg = (RLHFConfig.fast if fast else RLHFConfig)(beta=beta, seed=seed)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    policy = copy.deepcopy(world.reference).train()
    opt = make_optimizer(policy, cfg.lr, cfg.weight_decay)
    set_lr(opt, cfg.lr)
    path = [point(world.ref_logp, world.ref_logp, world.gold)]
    groups = (cfg.prompts_per_step, cfg.k)
    for _ in range(cfg.steps):
        y = _sample(policy, cfg.prompts_per_step * cfg.k, g)       # steps 1-2: on-policy samples, scored
        logp = exact_logps(policy.train())[y]                        # log π(y) of each sample
        adv = kl_penalised_advantages(reward[y].view(groups), logp.view(*groups, 1),   # a response's log-prob
                                      world.ref_logp[y].view(*groups, 1), beta)         # as one "token"
        loss = reinforce_loss(logp, adv.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        opt.step()
        path.append(point(exact_logps(policy).detach(), world.ref_logp, world.gold))
    return exact_logps(policy.eval()).detach(), path, {"rlhf_steps": cfg.steps, "rlhf_samples":
                                                       cfg.steps * cfg.prompts_per_step * cfg.k,
                                                       "rlhf_config": asdict(cfg)}


def rung4_budgets(world: World, beta: float = BETA, seed: int = 0, fast: bool = False) -> Rung:
    """The stages' own optimisers and step counts: DPO by `dpo.run_dpo`, the reward model by its
    stage's settings, then REINFORCE sampled with its stage's settings on that reward model. Same
    pairs, same objective (β, the raw reward), finite budgets: how far is each road from π*(r_φ), the
    optimum of J for the reward model this rung trained (RLHF's own target; for DPO the policy the
    theorem would have it reach, not its own loss's minimiser), and from the other road?"""
    dpo, dpo_path, dpo_info = stage_dpo(world, beta, seed, fast)
    reward, rm_info = stage_reward_model(world, seed, fast)
    rlhf, rlhf_path, rl_info = stage_reinforce(world, reward, beta, seed, fast)
    extra = {**dpo_info, **rm_info, **rl_info, "reward_gold_corr_unseen": _corr(reward[world.unlinked],
                                                                                world.gold[world.unlinked])}
    return Rung(4, "finite budgets as in the default run", world.ref_logp, dpo, rlhf, reward, world.gold,
                world.unlinked, beta, {"dpo": dpo_path, "rlhf": rlhf_path}, extra)


RUNGS = (rung0_theorem, rung1_unlinked, rung2_gpt_policy, rung3_gpt_reward, rung4_budgets)
N_SEEDS, FAST_SEEDS = 3, 2   # one seed: one draw of pairs (and of every sampled step), for every rung
_WORLDS: dict = {}


def seeds(run) -> list[int]:
    return [run.seed + i for i in range(FAST_SEEDS if run.fast else N_SEEDS)]


def world_of(seed: int) -> World:
    """One seed's enumerable world, built once per process (its reference takes a second or two)."""
    if seed not in _WORLDS:
        _WORLDS[seed] = make_world(seed, N_PAIRS)
    return _WORLDS[seed]


def compute_rung(k: int, seed: int, fast: bool = False) -> dict:
    """Rung k (0–4) on seed `seed`'s world, measured: what one unit of the study holds."""
    world, steps = world_of(seed), FAST_EXACT_STEPS if fast else EXACT_STEPS
    if k in (2, 3):
        rung = RUNGS[k](world, BETA, steps)
    elif k == 4:
        rung = RUNGS[k](world, BETA, seed, fast)
    else:
        rung = RUNGS[k](world, BETA)
    return {**measure(rung), "seed": seed, "linked": len(world.linked), "pairs_kept": len(world.pairs),
            "pairs_drawn": world.drawn}


def rung_unit(run, k: int, seed: int) -> tuple[dict, float | None]:
    """A cached unit of the study: rung k on one seed (RUN/bridge/units/rung{k}_s{seed}.json).
    Returns (its numbers, the seconds it took, None when reused)."""
    from ..checkpoint import read_json, write_json
    from ..harness import provenance
    name = f"rung{k}_s{seed}"
    out = run.out / "bridge" / "units" / f"{name}.json"
    config = {"rung": k, "seed": seed, "beta": BETA, "n_pairs": N_PAIRS,
              "steps": FAST_EXACT_STEPS if run.fast else EXACT_STEPS}
    computed = run.cached(name, config, {}, lambda: write_json(out, compute_rung(k, seed, run.fast)), outputs=[out],
                          code="studies.bridge", folder=out.parent, announce=False)
    return read_json(out), provenance.read_record(out.parent, name)["seconds"] if computed else None


# --- reading the rungs ------------------------------------------------------------------------------
def matched(paths: dict, starts: list[float]) -> dict:
    """Roads read as Figure 2 reads methods. `paths`: road -> one list of (KL, gold) points per seed.
    Each seed's hull of a road (its points and the start at KL 0, `compare.frontier`) is read at one
    KL, the largest every road reaches in every seed. Then RLHF − DPO paired by seed (`difference`),
    and that difference as a share of the better road's gain over the start, seed by seed (`share`)."""
    hulls = {road: [C.frontier(p, (0.0, s, math.nan)) for p, s in zip(ps, starts)] for road, ps in paths.items()}
    kl = min(h[-1][0] for hs in hulls.values() for h in hs)
    gold = {road: [C.at_kl(h, kl)[0] for h in hs] for road, hs in hulls.items()}
    dpo, rlhf = gold["dpo"], gold["rlhf"]
    share = [(y - x) / (max(x, y) - s) if max(x, y) - s > 1e-12 else 0.0 for x, y, s in zip(dpo, rlhf, starts)]
    out = {"kl": kl, "gold": gold, "difference": C.paired(rlhf, dpo).as_dict(), "share": share}
    out["share_mean"], out["share_std"] = C.mean_std(share)
    for road in gold:
        out[f"gold_{road}"], out[f"gold_{road}_std"] = C.mean_std(gold[road])
    return out


SUMMED = ("tv_dpo_rlhf", "kl_dpo_rlhf", "tv_dpo_opt", "tv_rlhf_opt", "kl_dpo_opt", "kl_rlhf_opt",
          "gold_dpo", "gold_rlhf", "gold_opt", "gold_ref", "kl_dpo", "kl_rlhf", "kl_opt",
          "unseen_mass_dpo", "unseen_mass_rlhf", "unseen_mass_opt", "unseen_mass_ref")


def summarise_rung(units: list[dict]) -> dict:
    """One rung over its seeds: every number's mean with its spread beside it (`KEY_std`) and its
    per-seed values; the roads at matched KL (`matched`: RLHF − DPO)."""
    first = units[0]
    out = {"rung": first["rung"], "name": first["name"], "seeds": [u["seed"] for u in units], "exact": True}
    numeric = [k for k, v in first.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and k not in ("rung", "seed") and all(isinstance(u.get(k), (int, float)) for u in units)]
    for key in numeric:
        values = [u[key] for u in units]
        out[key], out[f"{key}_std"] = C.mean_std(values)
        out.setdefault("values", {})[key] = values
    for key in ("tv_dpo_rlhf", "tv_dpo_opt", "tv_rlhf_opt"):
        out[f"{key}_max"] = max(u[key] for u in units)
    out["matched"] = matched({road: [u["paths"][road] for u in units] for road in ("dpo", "rlhf")},
                             [u["gold_ref"] for u in units])
    return out


def summarise_toy(toy: dict) -> dict:
    """Rung 5 in the same keys: the roads' final points over the seeds, the matched reading, and the
    default run's own pair (its distance and unseen mass: one seed, with sampling errors)."""
    d, seeds, starts = toy["default_run"], toy["seeds"], [toy["start_gold"]] * len(toy["seeds"])
    out = {"rung": 5, "name": "the default toy-world run (offline pairs vs on-policy RL; online DPO beside it)",
           "seeds": seeds, "exact": False, "values": {}}
    for road in ("dpo", "rlhf", "online_dpo"):
        kls, golds = [p[0] for p in toy["final"][road]], [p[1] for p in toy["final"][road]]
        for key, values in ((f"kl_{road}", kls), (f"gold_{road}", golds)):
            out[key], out[f"{key}_std"] = C.mean_std(values)
            out["values"][key] = values
    out["gold_ref"], out["gold_ref_std"] = toy["start_gold"], 0.0
    for key in ("tv_dpo_rlhf", "kl_dpo_rlhf"):
        out[key], out[f"{key}_se"] = d[key], d[f"{key}_se"]
    for road in ("dpo", "rlhf", "ref"):
        out[f"unseen_mass_{road}"], out[f"unseen_mass_{road}_se"] = d["unseen_mass"][road]["mass"], d["unseen_mass"][road]["se"]
    for key in ("tv_dpo_opt", "tv_rlhf_opt", "kl_dpo_opt", "kl_rlhf_opt"):
        out[key] = None  # π*(r_φ) of a reward model over every text: no sum to take
    out["matched"] = m = matched(toy["paths"], starts)  # DPO, RLHF and online DPO at one KL
    out["online"] = {"online_minus_dpo": C.paired(m["gold"]["online_dpo"], m["gold"]["dpo"]).as_dict(),
                     "rlhf_minus_online": C.paired(m["gold"]["rlhf"], m["gold"]["online_dpo"]).as_dict()}
    out["budgets"], out["paths"] = toy["budgets"], toy["paths"]
    return out


def attribution(rungs: list[dict]) -> dict:
    """What each rung of the enumerable world adds to the distance between the roads and to the gap
    at matched KL (as a share of the better road's gain), paired by seed against the rung above (the
    same pairs); rung 5's share beside it, never added to them (another world, other gold units)."""
    steps = []
    for before, now in zip(rungs[:4], rungs[1:5]):
        steps.append({"rung": now["rung"],
                      "tv": C.paired(now["values"]["tv_dpo_rlhf"], before["values"]["tv_dpo_rlhf"]).as_dict(),
                      "share": C.paired(now["matched"]["share"], before["matched"]["share"]).as_dict()})
    return {"steps": steps, "enumerable_share": rungs[4]["matched"]["share_mean"],
            "toy_share": rungs[5]["matched"]["share_mean"], "toy_share_std": rungs[5]["matched"]["share_std"]}


# --- the study ---------------------------------------------------------------------------------------------
def run_bridge(run) -> dict:
    result = run.study("bridge", lambda: _bridge(run))
    print_bridge(result)  # also when reused
    return result


def _bridge(run) -> None:
    from ..checkpoint import write_json
    from ..harness import plots
    from .bridge_toy import rung5_toy_world
    from ..training import StudyProgress
    toy = summarise_toy(rung5_toy_world(run))  # the long one first: its units are the Figure 2 study's
    plan = [(k, s) for k in range(len(RUNGS)) for s in seeds(run)]
    progress, done = StudyProgress("bridge", [f"rung{k}" for k, _ in plan]), {}
    for k, s in plan:
        done[(k, s)], seconds = rung_unit(run, k, s)
        progress.unit_done(f"rung{k}", f"rung {k} seed {s}", seconds)
    units = [[done[(k, s)] for s in seeds(run)] for k in range(len(RUNGS))]
    rungs = [summarise_rung(u) for u in units] + [toy]
    world = world_of(run.seed)
    result = {"beta": BETA, "n_pairs_drawn": N_PAIRS, "seeds": seeds(run), "fast": run.fast,
              "world": {"responses": len(world.gold), "words": list(WORDS), "linked_seed0": len(world.linked)},
              "budgets": {"rung4": {k: v for k, v in units[4][0].items() if k.endswith(("_config", "_steps", "_samples"))},
                          "rung5": rungs[5]["budgets"]},
              "rungs": rungs, "attribution": attribution(rungs),
              "probabilities_seed0": {k: units[k][0].get("probabilities") for k in range(len(RUNGS))}}
    out = run.out / "bridge"
    write_json(out / "bridge.json", result)
    plots.bridge_figure(result, out / "bridge.png")


def print_bridge(result: dict) -> None:
    print("rung  TV(DPO, RLHF)          gold DPO         gold RLHF        unseen mass DPO / RLHF   RLHF − DPO at matched KL")
    for r in result["rungs"]:
        spread = "_se" if r["rung"] == 5 else "_std"
        m, d = r["matched"], r["matched"]["difference"]
        print(f"  {r['rung']}   {r['tv_dpo_rlhf']:.2e} ± {r['tv_dpo_rlhf' + spread]:.1e}   "
              f"{r['gold_dpo']:+.3f} ± {r['gold_dpo_std']:.3f}   {r['gold_rlhf']:+.3f} ± {r['gold_rlhf_std']:.3f}   "
              f"{r['unseen_mass_dpo']:.3f} / {r['unseen_mass_rlhf']:.3f}            "
              f"at KL {m['kl']:.3f}: {d['gap_mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}], {d['verdict']}")
    a = result["attribution"]
    print("what each enumerable rung adds, paired by seed against the rung above (95 % interval):")
    for s in a["steps"]:
        print(f"  rung {s['rung']}: TV {s['tv']['gap_mean']:+.3e} [{s['tv']['low']:+.2e}, {s['tv']['high']:+.2e}], "
              f"share of the better road's gain {s['share']['gap_mean']:+.3f} [{s['share']['low']:+.3f}, "
              f"{s['share']['high']:+.3f}]")
    print(f"RLHF − DPO at matched KL as a share of the better road's gain: enumerable world, rung 4 "
          f"{a['enumerable_share']:+.3f}; toy world, rung 5 {a['toy_share']:+.3f} ± {a['toy_share_std']:.3f} "
          "(another world: set beside, never added)")
