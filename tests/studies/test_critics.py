import math

import torch

from minidpo import losses
from minidpo.studies.failure_modes import REMEDIES
from minidpo.studies.overoptimisation import bon_exact_kl, bon_kl_bound, fit_form, fitted_peak


def test_best_of_n_bound_matches_exact_enumeration_and_is_an_upper_bound():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(5000, generator=g, dtype=torch.float64), 0)
    scores = torch.randn(5000, generator=g, dtype=torch.float64)
    for n in (1, 2, 4, 16, 64):
        exact, bound = bon_exact_kl(probs, scores, n), bon_kl_bound(n)
        assert exact <= bound + 1e-12
        assert abs(exact - bound) < 0.02 * max(bound, 1e-3) + 1e-9, (n, exact, bound)
    # with few responses the bound is loose, but still a bound
    few = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    assert bon_exact_kl(few, torch.tensor([1.0, 2.0, 3.0]), 8) < bon_kl_bound(8) - 0.1
    assert bon_kl_bound(1) == 0.0


def test_functional_form_fits_recover_known_coefficients():
    d = torch.linspace(0.1, 4.0, 30, dtype=torch.float64)
    noise = 0.01 * torch.randn(30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, b = fit_form(d, d * (1.3 - 0.4 * d) + noise, "bon")
    assert abs(a - 1.3) < 0.05 * 1.3 and abs(b - 0.4) < 0.05 * 0.4
    a, b = fit_form(d, d * (0.9 - 0.3 * torch.log(d)) + noise, "rl")
    assert abs(a - 0.9) < 0.05 * 0.9 and abs(b - 0.3) < 0.05 * 0.3
    assert abs(fitted_peak(1.3, 0.4, "bon") - 1.3 / 0.8) < 1e-12
    assert abs(fitted_peak(0.9, 0.3, "rl") - math.exp(0.9 / 0.3 - 1)) < 1e-12
    assert fitted_peak(1.0, -0.1, "bon") is None


def test_remedies_use_the_registered_losses(fast_run, monkeypatch):
    """No second copy of a loss: the remedies name registered losses, and DPO training looks the
    loss up in minidpo.losses.LOSSES at every step."""
    from minidpo.dpo import DPOConfig, pair_logps, run_dpo
    from minidpo.preferences import encode_pairs, read_preferences
    for change in REMEDIES.values():
        assert change.get("loss_type", "sigmoid") in losses.LOSSES
    calls = []
    original = losses.LOSSES["ipo"]
    counted = losses.Loss("ipo", lambda record, **a: calls.append(1) or original.fn(record, **a), True, original.args)
    monkeypatch.setitem(losses.LOSSES, "ipo", counted)
    run, _ = fast_run
    policy = run.load_policy("sft.pt")
    pairs, _ = read_preferences(run.path("prefs_val.jsonl"))
    enc, _ = encode_pairs(run.tok, pairs[:32], policy.config.block_size)
    ref = pair_logps(policy, enc, run.tok.end_id, average=False)
    run_dpo(policy, DPOConfig.fast(loss_type="ipo", beta=0.1, epochs=1), enc, ref, enc[:8], ref[:8],
            run.tok.end_id, quiet=True)
    assert len(calls) >= 2  # every training step and every evaluation went through the registry


def test_one_online_round_samples_the_current_policy_and_raises_gold(fast_run):
    import copy
    from minidpo import world
    from minidpo.dpo import DPOConfig, pair_logps
    from minidpo.evaluate import evaluate_policy
    from minidpo.studies.online_dpo import online_round
    from minidpo.preferences import encode_pairs, make_pairs, read_preferences
    from minidpo.sampling import make_generator, sample
    run, _ = fast_run
    tok, sft = run.tok, run.load_policy("sft.pt")
    # start the round from a policy that is NOT the SFT model, so "current policy" is testable
    policy = run.load_policy("dpo.pt")
    before = copy.deepcopy(policy)
    prompts = [world.make_prompt(t) for t in world.split_titles()[0][:120] for _ in range(2)]
    val_pairs, _ = read_preferences(run.path("prefs_val.jsonl"))
    val_enc, _ = encode_pairs(tok, val_pairs, sft.config.block_size)
    val = (val_enc, pair_logps(sft, val_enc, tok.end_id, average=False))
    pairs, info = online_round(policy, sft, tok, prompts, DPOConfig.fast(), val, seed=7)
    # the round's texts are exactly what the policy at the start of the round samples with that seed
    regenerated, _ = make_pairs(before, tok, prompts, 2, 7)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [(p["chosen"], p["rejected"]) for p in regenerated]
    texts = [tok.decode_response(r) for r in sample(before, tok, [p for p in prompts for _ in range(2)], make_generator(7, "cpu"))]
    assert {p["chosen"] for p in pairs} <= set(texts)
    assert {p["chosen"] for p in pairs} != {p["chosen"] for p in make_pairs(sft, tok, prompts, 2, 7)[0]}
    heldout = run.eval_prompts()
    g_before = evaluate_policy(before, sft, tok, heldout, seed=100)["gold_reward"]
    g_after = evaluate_policy(policy, sft, tok, heldout, seed=100)["gold_reward"]
    assert g_after > g_before
