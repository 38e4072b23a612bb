"""The microscope: exact probabilities on an enumerable GPT, the two published claims, CHES."""
import math

import pytest
import torch

from minidpo.studies import microscope as M


@pytest.fixture(scope="module")
def study():
    return M.enumerable_study(seed=0, fast=True)


def test_every_response_is_listed_and_their_probabilities_sum_to_one(study):
    responses = M.all_responses()
    assert len(responses) == 1 + 3 + 9 + 27 == study["n_responses"] and len({tuple(r) for r in responses}) == 40
    assert abs(study["ref_total_probability"] - 1) < 1e-6
    assert abs(study["kl"]["policy_total_probability"] - 1) < 1e-6
    model = M.tiny_gpt(3)
    assert abs(M.exact_logps(model).exp().sum().item() - 1) < 1e-12  # any GPT, trained or not


def test_exact_kl_agrees_with_its_sampled_estimate(study):
    k = study["kl"]
    assert k["exact"] > 0.01 and abs(k["exact"] - k["sampled"]) < 4 * k["standard_error"]


def test_dpo_drives_the_loser_to_zero_whatever_beta_while_ipo_stops_at_its_target_margin(study):
    pair = study["deterministic_pair"]
    traces = pair["traces"]
    for beta in (0.1, 1.0, 10.0):  # DPO: π(y_l) keeps falling towards 0, whatever β
        dpo = [t["p_loser"] for t in traces[f"sigmoid_beta{beta}"]]
        assert dpo[-1] < dpo[0] / 1000 and all(b <= a * 1.001 for a, b in zip(dpo, dpo[1:])), (beta, dpo)
    for beta in (0.1, 1.0, 10.0):  # IPO: the margin h stops at its target 1/(2β) ...
        last = traces[f"ipo_beta{beta}"][-1]
        h = math.log(last["p_winner"] / pair["ref_p_winner"]) - math.log(last["p_loser"] / pair["ref_p_loser"])
        assert h == pytest.approx(1 / (2 * beta), abs=0.01), (beta, h)
    for beta in (1.0, 10.0):  # ... where π(y_l) settles well above DPO's
        ipo = [t["p_loser"] for t in traces[f"ipo_beta{beta}"]]
        assert ipo[-1] > 1e-3 and abs(math.log(ipo[-1] / ipo[-2])) < math.log(1.5), (beta, ipo)
        assert ipo[-1] > 1000 * traces[f"sigmoid_beta{beta}"][-1]["p_loser"]
    # ... but the target bounds the margin, not the probabilities: at β = 0.1 (a 5-nat target) π(y_l)
    # ends below DPO's at β = 10, and the end value is not monotone in β
    ends = [traces[f"ipo_beta{b}"][-1]["p_loser"] for b in (0.1, 1.0, 10.0)]
    assert ends[0] < traces["sigmoid_beta10.0"][-1]["p_loser"] and ends[0] < ends[2] < ends[1]


def test_out_of_data_mass_is_measured_for_dpo_the_rl_optimum_and_the_remedies(study):
    o = study["out_of_data"]
    for key in ("reference", "rl_optimum", "dpo", "rpo (SFT term)", "dpop", "dpo without the quarter of largest normalised CHES"):
        assert 0 <= o[key] <= 1
    # the RL optimum keeps unlabelled responses in the reference's proportions (r̂ = 0 there)
    assert len(o["labelled"]) == 6 and o["rl_optimum"] < o["reference"] + 1e-9
    # Xu et al.: DPO moves probability onto responses no pair contains, the RL optimum does not
    assert o["dpo"] > 0.5 > 0.05 > o["rl_optimum"]


def test_ches_is_the_paper_formula_on_hidden_states(fast_run):
    from minidpo.preferences import encode_pairs, read_preferences
    run, _ = fast_run
    model = run.load_policy("sft.pt")
    enc, _ = encode_pairs(run.tok, read_preferences(run.path("prefs_val.jsonl"))[0][:4], model.config.block_size)
    got = M.ches_scores(model, enc, run.tok.end_id)
    normalised = M.ches_scores(model, enc, run.tok.end_id, normalised=True)
    for i, (c, r) in enumerate(enc):
        sums, counts = [], []
        for ids, mask in (c, r):
            with torch.no_grad():
                h = model.hidden(torch.tensor([ids[:-1]]))[0]
            sums.append(sum(h[t - 1] for t in range(1, len(ids)) if mask[t]))
            counts.append(sum(mask[1:]))
        assert torch.allclose(got[i], sums[0] @ sums[1] - sums[0] @ sums[0], rtol=1e-4, atol=1e-3)
        w, l = sums[0] / counts[0], sums[1] / counts[1]  # Razin et al.'s length-normalised CHES: mean states
        assert torch.allclose(normalised[i], w @ l - w @ w, rtol=1e-4, atol=1e-4)
    # a pair of one response with itself: CHES = ⟨H, H⟩ − ‖H‖² = 0, in both forms (not "large")
    same = [(c, c) for c, _ in enc]
    assert M.ches_scores(model, same, run.tok.end_id).abs().max() < 1e-3
    assert M.ches_scores(model, same, run.tok.end_id, normalised=True).abs().max() < 1e-5


def exactly_correlated(r: float, n: int):
    """Two series of n values whose sample correlation is exactly r."""
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    x = x - x.mean()
    x = x / x.norm()
    z = z - z.mean() - (z @ x) * x
    z = z / z.norm()
    return x, r * x + math.sqrt(1 - r * r) * z


def test_a_correlation_carries_its_fisher_interval():
    x, y = exactly_correlated(-0.053, 1000)  # the case: "negative" on 1,000 pairs
    c = M.correlation(x, y)
    half = 1.959964 / math.sqrt(997)
    assert c["r"] == pytest.approx(-0.053, abs=1e-12) and c["n"] == 1000
    assert (c["low"], c["high"]) == pytest.approx((math.tanh(math.atanh(-0.053) - half), math.tanh(math.atanh(-0.053) + half)))
    assert c["low"] == pytest.approx(-0.1146, abs=1e-4) and c["high"] == pytest.approx(0.0090, abs=1e-4)
    assert c["verdict"] == "no measurable correlation"
    assert M.correlation(*exactly_correlated(-0.2, 1000))["verdict"] == "negative"
    assert M.correlation(*exactly_correlated(0.2, 1000))["verdict"] == "positive"


def test_a_gap_between_two_shares_carries_its_interval():
    a, b = [True] * 74 + [False] * 26, [True] * 64 + [False] * 36
    g = M.share_gap(a, b)
    half = 1.959964 * math.sqrt(0.74 * 0.26 / 100 + 0.64 * 0.36 / 100)
    assert (g["a"], g["b"], g["gap"]) == pytest.approx((0.74, 0.64, 0.10))
    assert (g["low"], g["high"]) == pytest.approx((0.10 - half, 0.10 + half)) and g["verdict"] == "no measurable difference"
    assert M.share_gap(a * 3, b * 3)["verdict"] == "above"  # the same shares on three times the pairs


def test_the_study_is_computed_once_and_each_caller_gets_its_own_copy(study):
    again = M.enumerable_study(seed=0, fast=True)
    assert again == study and again is not study
    again["kl"]["exact"] = -1.0  # a caller's change stays its own
    assert M.enumerable_study(seed=0, fast=True)["kl"]["exact"] == study["kl"]["exact"] > 0
