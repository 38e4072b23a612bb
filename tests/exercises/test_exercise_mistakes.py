"""Every classic mistake of the catalogue, written here the way a learner writes it (not the grader's
own copy): the grader must call the answer wrong and name exactly that mistake. Then the same
mistakes in disguise (other code, the same numbers), and functions that change their inputs in
place, which the grader names `modifies-its-inputs` on every exercise."""
import pytest
import torch
import torch.nn.functional as F

from minidpo.exercises.catalogue import EXERCISES, find
from minidpo.exercises.grader import grade_function


# --- sequence-logps ------------------------------------------------------------------------------------
def logps_logits_at_t(logits, input_ids, response_mask):
    logp = torch.log_softmax(logits, dim=-1)
    token = torch.gather(logp, 2, input_ids[..., None])[..., 0]  # token t from the logits at t
    return (token * response_mask).sum(dim=1)


def logps_mask_not_shifted(logits, input_ids, response_mask):
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    token = torch.gather(logp, 2, input_ids[:, 1:, None])[..., 0]
    return torch.where(response_mask[:, :-1], token, torch.zeros_like(token)).sum(1)


def logps_prompt_and_padding_counted(logits, input_ids, response_mask):
    logp = logits[:, :-1].log_softmax(-1)
    return logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1).sum(-1)


def logps_mean_not_sum(logits, input_ids, response_mask):
    logp = logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = response_mask[:, 1:].to(logp.dtype)
    return (logp * mask).sum(-1) / mask.sum(-1)


def logps_log_of_softmax(logits, input_ids, response_mask):
    probs = F.softmax(logits[:, :-1], dim=-1)
    token = probs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1).log()
    return (token * response_mask[:, 1:]).sum(-1)


def logps_raw_logits(logits, input_ids, response_mask):
    picked = logits[:, :-1].gather(2, input_ids[:, 1:, None]).squeeze(2)
    return (picked * response_mask[:, 1:]).sum(1)


# --- bradley-terry-loss --------------------------------------------------------------------------------
def bt_swapped(chosen_scores, rejected_scores):
    return -F.logsigmoid(rejected_scores - chosen_scores)


def bt_log_of_sigmoid(chosen_scores, rejected_scores):
    return -torch.sigmoid(chosen_scores - rejected_scores).log()


def bt_missing_minus(chosen_scores, rejected_scores):
    return F.logsigmoid(chosen_scores - rejected_scores)


def bt_batch_mean(chosen_scores, rejected_scores):
    return torch.mean(-F.logsigmoid(chosen_scores - rejected_scores))


# --- reinforce-advantages ------------------------------------------------------------------------------
def _returns(rewards, policy_token_logps, ref_token_logps, beta):
    kl = (policy_token_logps.detach() - ref_token_logps).sum(-1)
    return rewards - beta * kl


def adv_baseline_includes_own(rewards, policy_token_logps, ref_token_logps, beta):
    R = _returns(rewards, policy_token_logps, ref_token_logps, beta)
    return R - R.mean(dim=1, keepdim=True)


def adv_no_baseline(rewards, policy_token_logps, ref_token_logps, beta):
    return _returns(rewards, policy_token_logps, ref_token_logps, beta)


def adv_kl_wrong_sign(rewards, policy_token_logps, ref_token_logps, beta):
    kl = (ref_token_logps - policy_token_logps.detach()).sum(-1)  # log π_ref/π: the reverse
    R = rewards - beta * kl
    K = R.shape[1]
    return R - (R.sum(1, keepdim=True) - R) / (K - 1)


def adv_k3_estimator(rewards, policy_token_logps, ref_token_logps, beta):
    log_r = ref_token_logps - policy_token_logps.detach()
    R = rewards - beta * (torch.exp(log_r) - 1 - log_r).sum(-1)
    K = R.shape[1]
    return R - (R.sum(1, keepdim=True) - R) / (K - 1)


def adv_not_detached(rewards, policy_token_logps, ref_token_logps, beta):
    R = rewards - beta * (policy_token_logps - ref_token_logps).sum(-1)
    K = R.shape[1]
    others = torch.stack([torch.cat([R[:, :i], R[:, i + 1:]], 1).mean(1) for i in range(K)], 1)
    return R - others


# --- reinforce-loss ------------------------------------------------------------------------------------
def rl_sign_flipped(seq_logps, advantages):
    return (advantages.detach() * seq_logps).mean()


def rl_advantages_not_detached(seq_logps, advantages):
    return -torch.mean(advantages * seq_logps)


def rl_sum_not_mean(seq_logps, advantages):
    return -(advantages.detach() * seq_logps).sum()


def rl_probabilities(seq_logps, advantages):
    return -(advantages.detach() * torch.exp(seq_logps)).mean()


def rl_recentred(seq_logps, advantages):
    centred = advantages.detach() - advantages.detach().mean()  # "a baseline can't hurt"
    return -(centred * seq_logps).mean()


# --- group-advantages ----------------------------------------------------------------------------------
def grp_no_eps(rewards):
    return (rewards - rewards.mean(-1, keepdim=True)) / rewards.std(-1, keepdim=True)


def grp_population_std(rewards):
    mean = rewards.mean(-1, keepdim=True)
    std = ((rewards - mean) ** 2).mean(-1, keepdim=True).sqrt()
    return (rewards - mean) / (std + 1e-4)


def grp_over_batch(rewards):
    return (rewards - rewards.mean()) / (rewards.std() + 1e-4)


def grp_mean_only(rewards):
    return rewards - rewards.mean(dim=1, keepdim=True)


# --- optimal-policy ------------------------------------------------------------------------------------
def opt_beta_multiplies(ref_logp, reward, beta):
    log_z = torch.logsumexp(ref_logp + beta * reward, dim=-1)
    return ref_logp + beta * reward - log_z[:, None], log_z


def opt_z_without_reference(ref_logp, reward, beta):
    log_z = torch.logsumexp(reward / beta, dim=-1)
    return ref_logp + reward / beta - log_z.unsqueeze(-1), log_z


def opt_exp_overflows(ref_logp, reward, beta):
    z = (ref_logp.exp() * (reward / beta).exp()).sum(-1)
    pi = ref_logp.exp() * (reward / beta).exp() / z.unsqueeze(-1)
    return pi.log(), z.log()


def opt_over_all_prompts(ref_logp, reward, beta):
    scores = ref_logp + reward / beta
    log_z = torch.logsumexp(scores.flatten(), 0)
    return scores - log_z, log_z.repeat(ref_logp.shape[0])


# --- dpo-loss ------------------------------------------------------------------------------------------
def dpo_beta_outside(pc, pr, rc, rr, beta):
    h = (pc - rc) - (pr - rr)
    return -beta * F.logsigmoid(h), (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def dpo_swapped(pc, pr, rc, rr, beta):
    chosen, rejected = beta * (pr - rr), beta * (pc - rc)  # read the columns the wrong way round
    return -F.logsigmoid(chosen - rejected), chosen.detach(), rejected.detach()


def dpo_rewards_without_beta(pc, pr, rc, rr, beta):
    chosen, rejected = pc - rc, pr - rr
    return -F.logsigmoid(beta * (chosen - rejected)), chosen.detach(), rejected.detach()


def dpo_rewards_not_detached(pc, pr, rc, rr, beta):
    chosen, rejected = beta * (pc - rc), beta * (pr - rr)
    return -F.logsigmoid(chosen - rejected), chosen, rejected


def dpo_log_of_sigmoid(pc, pr, rc, rr, beta):
    chosen, rejected = beta * (pc - rc), beta * (pr - rr)
    return -torch.log(torch.sigmoid(chosen - rejected)), chosen.detach(), rejected.detach()


def dpo_no_reference(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * (pc - pr)), (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def dpo_batch_mean(pc, pr, rc, rr, beta):
    chosen, rejected = beta * (pc - rc), beta * (pr - rr)
    return -F.logsigmoid(chosen - rejected).mean(), chosen.detach(), rejected.detach()


# --- conservative-dpo-loss -----------------------------------------------------------------------------
def cdpo_sign_flipped(h, beta, label_smoothing):
    return -(1 - label_smoothing) * F.logsigmoid(beta * h) + label_smoothing * F.logsigmoid(-beta * h)


def cdpo_weights_swapped(h, beta, label_smoothing):
    return -label_smoothing * F.logsigmoid(beta * h) - (1 - label_smoothing) * F.logsigmoid(-beta * h)


def cdpo_beta_outside(h, beta, label_smoothing):
    return beta * (-(1 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h))


def cdpo_log_of_sigmoid(h, beta, label_smoothing):
    p = torch.sigmoid(beta * h)
    return -(1 - label_smoothing) * torch.log(p) - label_smoothing * torch.log(1 - p)


def cdpo_no_smoothing(h, beta, label_smoothing):
    return -F.logsigmoid(beta * h)


# --- gae -----------------------------------------------------------------------------------------------
def _gae(rewards, values, mask, gamma, lam, mask_next=True, use_lam=True, mask_out=True):
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    for b in range(B):
        last = 0.0
        for t in reversed(range(T)):
            if mask_out and not mask[b, t]:
                continue
            nxt = values[b, t + 1] if t + 1 < T and (not mask_next or mask[b, t + 1]) else 0.0
            delta = rewards[b, t] + gamma * nxt - values[b, t]
            last = delta + gamma * (lam if use_lam else 1.0) * last
            adv[b, t] = last
    return adv


def gae_bootstrap_past_end(rewards, values, mask, gamma, lam):
    adv = _gae(rewards, values, mask, gamma, lam, mask_next=False)
    return adv, (adv + values) * mask


def gae_lambda_forgotten(rewards, values, mask, gamma, lam):
    adv = _gae(rewards, values, mask, gamma, lam, use_lam=False)
    return adv, (adv + values) * mask


def gae_not_masked(rewards, values, mask, gamma, lam):
    adv = _gae(rewards, values, mask, gamma, lam, mask_next=False, mask_out=False)
    return adv, adv + values


def gae_returns_without_values(rewards, values, mask, gamma, lam):
    adv = _gae(rewards, values, mask, gamma, lam)
    return adv, adv.clone()


# --- ppo-clipped-loss ----------------------------------------------------------------------------------
def _ratio(new_logps, old_logps):
    return (new_logps - old_logps).exp()


def ppo_min_not_max(new_logps, old_logps, advantages, mask, clip):
    r = _ratio(new_logps, old_logps)
    objective = torch.max(r * advantages, r.clamp(1 - clip, 1 + clip) * advantages)  # the optimistic bound
    return -(objective * mask).sum() / mask.sum()


def ppo_no_clip(new_logps, old_logps, advantages, mask, clip):
    return -(_ratio(new_logps, old_logps) * advantages)[mask].mean()


def ppo_ratio_not_exponentiated(new_logps, old_logps, advantages, mask, clip):
    r = new_logps - old_logps
    objective = torch.min(r * advantages, torch.clamp(r, 1 - clip, 1 + clip) * advantages)
    return -objective[mask].mean()


def ppo_mask_ignored(new_logps, old_logps, advantages, mask, clip):
    r = _ratio(new_logps, old_logps)
    return -torch.min(r * advantages, torch.clamp(r, 1 - clip, 1 + clip) * advantages).mean()


def ppo_divided_by_all(new_logps, old_logps, advantages, mask, clip):
    r = _ratio(new_logps, old_logps)
    objective = torch.min(r * advantages, torch.clamp(r, 1 - clip, 1 + clip) * advantages)
    return -(objective * mask).mean()


WRONG = {  # (exercise, the mistake it must be named as) -> the learner's wrong function
    ("sequence-logps", "logits-at-t"): logps_logits_at_t,
    ("sequence-logps", "mask-not-shifted"): logps_mask_not_shifted,
    ("sequence-logps", "prompt-and-padding-counted"): logps_prompt_and_padding_counted,
    ("sequence-logps", "mean-not-sum"): logps_mean_not_sum,
    ("sequence-logps", "log-of-softmax"): logps_log_of_softmax,
    ("sequence-logps", "raw-logits"): logps_raw_logits,
    ("bradley-terry-loss", "chosen-rejected-swapped"): bt_swapped,
    ("bradley-terry-loss", "log-of-sigmoid"): bt_log_of_sigmoid,
    ("bradley-terry-loss", "missing-minus"): bt_missing_minus,
    ("bradley-terry-loss", "batch-mean"): bt_batch_mean,
    ("reinforce-advantages", "baseline-includes-own"): adv_baseline_includes_own,
    ("reinforce-advantages", "no-baseline"): adv_no_baseline,
    ("reinforce-advantages", "kl-wrong-sign"): adv_kl_wrong_sign,
    ("reinforce-advantages", "k3-estimator"): adv_k3_estimator,
    ("reinforce-advantages", "not-detached"): adv_not_detached,
    ("reinforce-loss", "sign-flipped"): rl_sign_flipped,
    ("reinforce-loss", "advantages-not-detached"): rl_advantages_not_detached,
    ("reinforce-loss", "sum-not-mean"): rl_sum_not_mean,
    ("reinforce-loss", "probabilities-not-log-probs"): rl_probabilities,
    ("reinforce-loss", "advantages-recentred"): rl_recentred,
    ("group-advantages", "zero-variance-divides-by-zero"): grp_no_eps,
    ("group-advantages", "population-std"): grp_population_std,
    ("group-advantages", "normalised-over-batch"): grp_over_batch,
    ("group-advantages", "mean-only"): grp_mean_only,
    ("optimal-policy", "beta-multiplies"): opt_beta_multiplies,
    ("optimal-policy", "z-without-reference"): opt_z_without_reference,
    ("optimal-policy", "exp-overflows"): opt_exp_overflows,
    ("optimal-policy", "normalised-over-all-prompts"): opt_over_all_prompts,
    ("dpo-loss", "beta-outside-sigmoid"): dpo_beta_outside,
    ("dpo-loss", "chosen-rejected-swapped"): dpo_swapped,
    ("dpo-loss", "rewards-without-beta"): dpo_rewards_without_beta,
    ("dpo-loss", "rewards-not-detached"): dpo_rewards_not_detached,
    ("dpo-loss", "log-of-sigmoid"): dpo_log_of_sigmoid,
    ("dpo-loss", "no-reference"): dpo_no_reference,
    ("dpo-loss", "batch-mean"): dpo_batch_mean,
    ("conservative-dpo-loss", "smoothing-sign-flipped"): cdpo_sign_flipped,
    ("conservative-dpo-loss", "smoothing-weights-swapped"): cdpo_weights_swapped,
    ("conservative-dpo-loss", "beta-outside-sigmoid"): cdpo_beta_outside,
    ("conservative-dpo-loss", "log-of-sigmoid"): cdpo_log_of_sigmoid,
    ("conservative-dpo-loss", "no-smoothing"): cdpo_no_smoothing,
    ("gae", "bootstrap-past-end"): gae_bootstrap_past_end,
    ("gae", "lambda-forgotten"): gae_lambda_forgotten,
    ("gae", "not-masked"): gae_not_masked,
    ("gae", "returns-without-values"): gae_returns_without_values,
    ("ppo-clipped-loss", "min-not-max"): ppo_min_not_max,
    ("ppo-clipped-loss", "no-clip"): ppo_no_clip,
    ("ppo-clipped-loss", "ratio-not-exponentiated"): ppo_ratio_not_exponentiated,
    ("ppo-clipped-loss", "mask-ignored"): ppo_mask_ignored,
    ("ppo-clipped-loss", "divided-by-all-positions"): ppo_divided_by_all,
}


def test_every_catalogued_mistake_has_a_learners_version_here_and_every_exercise_at_least_three():
    catalogued = {(ex.name, m.name) for ex in EXERCISES for m in ex.mistakes}
    assert catalogued == set(WRONG)
    graded_by_cases = [ex for ex in EXERCISES if ex.grade is None]
    assert all(len(ex.mistakes) >= 3 for ex in graded_by_cases) and len(EXERCISES) >= 8


@pytest.mark.parametrize("exercise, mistake", sorted(WRONG), ids=lambda x: x)
def test_the_grader_catches_and_names_the_mistake(exercise, mistake):
    verdict = grade_function(find(exercise), WRONG[exercise, mistake])
    assert verdict.status == "wrong", verdict.report
    assert verdict.mistakes == [mistake], verdict.report
    assert f"A classic mistake: {mistake}" in verdict.report and "Read: tutorials/" in verdict.report


def test_two_mistakes_at_once_are_both_named():
    def dpo_two_mistakes(pc, pr, rc, rr, beta):  # log of sigmoid, and rewards left attached
        chosen, rejected = beta * (pc - rc), beta * (pr - rr)
        return -torch.sigmoid(chosen - rejected).log(), chosen, rejected
    verdict = grade_function(find("dpo-loss"), dpo_two_mistakes)
    assert verdict.status == "wrong" and verdict.mistakes == ["rewards-not-detached", "log-of-sigmoid"]


# --- the same mistakes in disguise: other code, the same numbers --------------------------------------
def bt_swapped_softplus(chosen_scores, rejected_scores):
    return F.softplus(chosen_scores - rejected_scores)  # softplus(x) = −log σ(−x): the margin reversed


def bt_mean_through_bce(chosen_scores, rejected_scores):
    return F.binary_cross_entropy_with_logits(chosen_scores - rejected_scores, torch.ones_like(chosen_scores))


def dpo_sigmoid_by_hand(pc, pr, rc, rr, beta):
    h = (pc - rc) - (pr - rr)
    return -torch.log(1 / (1 + torch.exp(-beta * h))), (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def dpo_beta_outside_softplus(pc, pr, rc, rr, beta):
    h = (pc - rc) - (pr - rr)
    return beta * F.softplus(-h), (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def dpo_margin_of_policy_only(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * pc - beta * pr), (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def grp_population_var(rewards):
    centred = rewards - rewards.mean(-1, keepdim=True)
    return centred / (rewards.var(-1, unbiased=False, keepdim=True).sqrt() + 1e-4)


def ppo_min_of_losses(new_logps, old_logps, advantages, mask, clip):
    r = (new_logps - old_logps).exp()
    losses = torch.min(-advantages * r, -advantages * r.clamp(1 - clip, 1 + clip))
    return losses[mask].mean()


def gae_returns_are_the_advantages(rewards, values, mask, gamma, lam):
    adv = _gae(rewards, values, mask, gamma, lam)
    return adv, adv


def opt_beta_through_softmax(ref_logp, reward, beta):
    scores = ref_logp + beta * reward
    return torch.log_softmax(scores, -1), torch.logsumexp(scores, -1)


def cdpo_plain_softplus(h, beta, label_smoothing):
    return F.softplus(-beta * h)


DISGUISED = {
    ("bradley-terry-loss", "chosen-rejected-swapped"): bt_swapped_softplus,
    ("bradley-terry-loss", "batch-mean"): bt_mean_through_bce,
    ("dpo-loss", "log-of-sigmoid"): dpo_sigmoid_by_hand,
    ("dpo-loss", "beta-outside-sigmoid"): dpo_beta_outside_softplus,
    ("dpo-loss", "no-reference"): dpo_margin_of_policy_only,
    ("group-advantages", "population-std"): grp_population_var,
    ("ppo-clipped-loss", "min-not-max"): ppo_min_of_losses,
    ("gae", "returns-without-values"): gae_returns_are_the_advantages,
    ("optimal-policy", "beta-multiplies"): opt_beta_through_softmax,
    ("conservative-dpo-loss", "no-smoothing"): cdpo_plain_softplus,
}


@pytest.mark.parametrize("exercise, mistake", sorted(DISGUISED), ids=lambda x: x)
def test_a_mistake_in_disguise_is_named_too(exercise, mistake):
    verdict = grade_function(find(exercise), DISGUISED[exercise, mistake])
    assert (verdict.status, verdict.mistakes) == ("wrong", [mistake]), verdict.report


def test_only_advantages_that_do_not_sum_to_zero_reveal_a_recentred_loss():
    """Every other case's advantages sum to 0, where subtracting their mean changes nothing."""
    verdict = grade_function(find("reinforce-loss"), rl_recentred)
    assert verdict.report.splitlines()[0].startswith('reinforce-loss: wrong on case 2 of 4, "two samples whose '
                                                     'advantages do not sum to 0 (A = [1, 1]'), verdict.report
    assert "expected tensor(4.)" in verdict.report and "got      tensor(-0.)" in verdict.report


# --- inputs changed in place: right values, and still wrong -------------------------------------------
def adv_rewards_in_place(rewards, policy_token_logps, ref_token_logps, beta):
    rewards -= beta * (policy_token_logps.detach() - ref_token_logps).sum(-1)  # REINFORCE then logs these
    K = rewards.shape[1]
    return rewards - (rewards.sum(1, keepdim=True) - rewards) / (K - 1)


def grp_normalised_in_place(rewards):
    rewards -= rewards.mean(1, keepdim=True)
    rewards /= rewards.std(1, keepdim=True) + 1e-4
    return rewards


def gae_values_zeroed_in_place(rewards, values, mask, gamma, lam):
    values[~mask] = 0  # "ignore it there"
    adv = _gae(rewards, values, mask, gamma, lam)
    return adv, (adv + values) * mask


def ppo_padding_zeroed_in_place(new_logps, old_logps, advantages, mask, clip):
    advantages[~mask] = 0
    r = (new_logps - old_logps).exp()
    objective = torch.min(r * advantages, r.clamp(1 - clip, 1 + clip) * advantages)
    return -(objective * mask).sum() / mask.sum()


IN_PLACE = {"reinforce-advantages": (adv_rewards_in_place, "rewards"),
            "group-advantages": (grp_normalised_in_place, "rewards"),
            "gae": (gae_values_zeroed_in_place, "values"),
            "ppo-clipped-loss": (ppo_padding_zeroed_in_place, "advantages")}


@pytest.mark.parametrize("exercise", sorted(IN_PLACE))
def test_a_function_that_changes_its_inputs_is_wrong_and_says_which(exercise):
    fn, changed = IN_PLACE[exercise]
    verdict = grade_function(find(exercise), fn)
    assert (verdict.status, verdict.mistakes) == ("wrong", ["modifies-its-inputs"]), verdict.report
    summary = verdict.report.splitlines()[1]
    assert summary.startswith(f"  - the outputs are right, but {changed} was changed in place: "), summary
    assert " -> " in summary and "A classic mistake: modifies-its-inputs" in verdict.report


def test_the_same_functions_written_out_of_place_are_right():
    def adv(rewards, policy_token_logps, ref_token_logps, beta):
        returns = rewards - beta * (policy_token_logps.detach() - ref_token_logps).sum(-1)
        return returns - (returns.sum(1, keepdim=True) - returns) / (returns.shape[1] - 1)

    def gae(rewards, values, mask, gamma, lam):
        values = torch.where(mask, values, torch.zeros_like(values))
        adv = _gae(rewards, values, mask, gamma, lam)
        return adv, (adv + values) * mask
    for name, fn in (("reinforce-advantages", adv), ("gae", gae)):
        assert grade_function(find(name), fn).right
