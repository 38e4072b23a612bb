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


def test_dpo_drives_the_loser_to_zero_whatever_beta_while_ipo_settles(study):
    traces = study["deterministic_pair"]["traces"]
    for beta in (0.1, 1.0, 10.0):  # DPO: π(y_l) keeps falling towards 0, whatever β
        dpo = [t["p_loser"] for t in traces[f"sigmoid_beta{beta}"]]
        assert dpo[-1] < dpo[0] / 1000 and all(b <= a * 1.001 for a, b in zip(dpo, dpo[1:])), (beta, dpo)
    for beta in (1.0, 10.0):  # IPO: a finite target, π(y_l) settles well above 0 ...
        ipo = [t["p_loser"] for t in traces[f"ipo_beta{beta}"]]
        assert ipo[-1] > 1e-3 and abs(math.log(ipo[-1] / ipo[-2])) < math.log(1.5), (beta, ipo)
        assert ipo[-1] > 1000 * traces[f"sigmoid_beta{beta}"][-1]["p_loser"]  # ... where DPO's does not


def test_out_of_data_mass_is_measured_for_dpo_the_rl_optimum_and_the_remedies(study):
    o = study["out_of_data"]
    for key in ("reference", "rl_optimum", "dpo", "rpo (SFT term)", "dpop", "dpo without the most similar quarter of pairs"):
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
    for i, (c, r) in enumerate(enc):
        sums = []
        for ids, mask in (c, r):
            with torch.no_grad():
                h = model.hidden(torch.tensor([ids[:-1]]))[0]
            sums.append(sum(h[t - 1] for t in range(1, len(ids)) if mask[t]))
        assert torch.allclose(got[i], sums[0] @ sums[1] - sums[0] @ sums[0], rtol=1e-4, atol=1e-3)


def test_the_study_is_computed_once_and_each_caller_gets_its_own_copy(study):
    again = M.enumerable_study(seed=0, fast=True)
    assert again == study and again is not study
    again["kl"]["exact"] = -1.0  # a caller's change stays its own
    assert M.enumerable_study(seed=0, fast=True)["kl"]["exact"] == study["kl"]["exact"] > 0
