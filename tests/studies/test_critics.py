import json
import math

import pytest
import torch

from minidpo import losses
from minidpo.studies.failure_modes import REMEDIES
from minidpo.studies import sweep
from minidpo.studies.overoptimisation import bon_exact_kl, bon_kl_bound, fit_form, fitted_peak, pool_kl, summarise


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


def test_a_fitted_peak_beyond_the_data_is_marked_as_extrapolation_and_a_rising_curve_has_no_peak():
    # best-of-n-like: gold rises at every point, the quadratic form turns only far beyond the data
    d = [0.0, 0.5, 1.0, 1.5, 2.0]
    curve = [{"kl_bound": x * x, "gold": x * (1.0 - 0.1 * x), "proxy": 2 * x} for x in d]
    s = summarise(curve, "kl_bound", "bon")
    assert not s["peaked"] and s["peak_d"] == pytest.approx(2.0) and s["d_max"] == pytest.approx(2.0)
    assert s["fit_peak_d"] == pytest.approx(5.0, rel=1e-6) and not s["fit_peak_in_data"]  # a/(2b) = 1/0.2
    assert s["fit_r2"] == pytest.approx(1.0, abs=1e-9) and s["fit_rms_after_peak"] is None
    # an RL-like curve that rises and collapses: observed peak inside, the form misses the collapse
    d = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    gold = [0.0, 0.4, 0.7, 0.8, 0.2, -0.6, -1.5]
    s = summarise([{"kl": x * x, "gold": g, "proxy": x} for x, g in zip(d, gold)], "kl", "rl")
    assert s["peaked"] and s["peak_d"] == pytest.approx(1.5) and s["peak_index"] == 3
    resid = [g - (s["fit_a"] * x - s["fit_b"] * x * math.log(max(x, 1e-12))) for x, g in zip(d, gold)]
    assert s["fit_rms_to_peak"] == pytest.approx(math.sqrt(sum(r * r for r in resid[:4]) / 4), abs=1e-9)
    assert s["fit_rms_after_peak"] == pytest.approx(math.sqrt(sum(r * r for r in resid[4:]) / 3), abs=1e-9)
    assert s["fit_peak_in_data"] == (s["fit_peak_d"] is not None and s["fit_peak_d"] <= 3.0)


def test_pool_kl_counts_each_distinct_response_once_and_stays_within_the_bound():
    texts = ["a", "b", "a", "c"]              # "a" twice: the pool has three responses
    logp = torch.log(torch.tensor([0.5, 0.3, 0.5, 0.2], dtype=torch.float64))
    proxy = torch.tensor([1.0, 2.0, 1.0, 3.0])
    exact = bon_exact_kl(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), torch.tensor([1.0, 2.0, 3.0]), 4)
    assert pool_kl(texts, logp, proxy, 4) == pytest.approx(exact, abs=1e-12)
    assert 0 < exact < bon_kl_bound(4) and pool_kl(texts, logp, proxy, 1) == pytest.approx(0.0, abs=1e-12)


SFT = {"gold_reward": 0.0, "fluency": 1.0, "entropy": 1.0, "unique_frac": 1.0}


def _pt(kl, gold, fluency=1.0, **more):
    return {"kl_to_ref": kl, "gold_reward": gold, "fluency": fluency, **more}


def test_matched_reads_both_frontiers_at_the_largest_kl_both_reach_and_pairs_the_seeds():
    # seed by seed: a is a remedy that ends at KL 1; b (DPO) goes to KL 4 along training
    a = [[_pt(0.5, 0.3, 0.95), _pt(1.0, 0.5, 0.90)], [_pt(1.0, 0.6, 0.9)], [_pt(1.0, 0.4, 0.9)]]
    b = [[_pt(2.0, 1.0, 0.80), _pt(4.0, 1.2, 0.70)], [_pt(2.0, 0.8, 0.8)], [_pt(2.0, 1.2, 0.8)]]
    m = sweep.matched(a, b, SFT)
    assert m["kl"] == [1.0, 1.0, 1.0]
    # b's hull at KL 1 is the chord from SFT (0, 0.0, 1.0) to (2, 1.0, 0.8): gold 0.5, fluency 0.9
    assert m["b_gold"] == pytest.approx([0.5, 0.4, 0.6]) and m["b_fluency"] == pytest.approx([0.9, 0.9, 0.9])
    assert m["a_gold"] == pytest.approx([0.5, 0.6, 0.4])
    assert m["gold"]["gaps"] == pytest.approx([0.0, 0.2, -0.2]) and m["gold"]["verdict"] == "no measurable difference"
    assert m["gold"]["n"] == 3 and m["fluency"]["gap_mean"] == pytest.approx(0.0, abs=1e-12)
    # a point below the chord never lowers the frontier (the hull, not a running maximum)
    b2 = [p + [_pt(1.0, 0.1, 0.5)] for p in b]
    assert sweep.matched(a, b2, SFT)["b_gold"] == pytest.approx(m["b_gold"])
    # per-seed starts, and a KL no seed reaches: nothing to pair
    assert sweep.matched(a, b, [SFT] * 3, kl=9.0)["gold"] is None


def test_matched_says_above_when_every_seed_agrees():
    a = [[_pt(1.0, 0.9 + 0.01 * i)] for i in range(3)]
    b = [[_pt(1.0, 0.5 + 0.02 * i)] for i in range(3)]
    m = sweep.matched(a, b, SFT)
    assert m["gold"]["verdict"] == "above" and m["gold"]["gap_mean"] == pytest.approx(0.39)
    assert m["gold"]["low"] > 0


def test_along_reads_a_measure_where_training_first_passes_a_kl():
    points = [_pt(1.0, 0.5, entropy=0.8), _pt(3.0, 0.9, entropy=0.4), _pt(2.0, 1.0, entropy=0.3)]
    assert sweep.along(points, SFT, 0.5, "entropy") == pytest.approx(0.9)    # between SFT (1.0) and 0.8
    assert sweep.along(points, SFT, 2.0, "entropy") == pytest.approx(0.6)    # first pass: 1.0 → 3.0
    assert sweep.along(points, SFT, 3.5, "entropy") is None                 # never reached


def test_the_critics_studies_pair_three_seeds_and_two_with_fast(fast_run):
    from dataclasses import replace as dc_replace
    run, _ = fast_run
    assert sweep.seeds(run) == [run.seed, run.seed + 1]
    assert sweep.seeds(dc_replace(run, fast=False)) == [run.seed + i for i in range(3)]


COMMITTED = ("overoptimisation", "diversity", "failure_modes", "online_dpo")


def _longest_list_of_numbers(value) -> int:
    """The longest list of plain numbers anywhere inside `value` (a study's JSON)."""
    if isinstance(value, dict):
        return max((_longest_list_of_numbers(v) for v in value.values()), default=0)
    if isinstance(value, list):
        own = len(value) if value and all(isinstance(v, (int, float)) for v in value) else 0
        return max([own, *(_longest_list_of_numbers(v) for v in value)])
    return 0


def test_a_list_of_per_sample_numbers_is_seen():
    assert _longest_list_of_numbers({"a": [{"gold": [0.1] * 400}], "b": [1, 2]}) == 400
    assert _longest_list_of_numbers({"gold": [[{"round": 1, "gold_reward": 0.3}]]}) == 0


@pytest.mark.parametrize("name", COMMITTED + ("cost",))
def test_the_committed_full_studies_are_small_and_hold_no_samples(name):
    """data/studies/ ships the full studies the lessons read when no run of theirs exists: each
    under 200 KB, no per-sample lists, three seeds (the cost table is one run, and says so)."""
    from minidpo.harness.tutorial import shipped_study
    found = shipped_study(f"{name}.json")
    assert found is not None and found.stat().st_size < 200_000
    text = found.read_text(encoding="utf-8")
    data = json.loads(text)
    assert '"samples"' not in text and _longest_list_of_numbers(data) < 100  # per-sample lists hold 400
    if name != "cost":
        assert len(data["seeds"]) >= 3


def test_the_critics_page_quotes_the_committed_paired_differences():
    """docs/critics.md states each remedy's and each online comparison's paired gold difference as
    the committed studies hold it."""
    from pathlib import Path
    from minidpo.harness.tutorial import shipped_study
    page = (Path(__file__).resolve().parents[2] / "docs" / "critics.md").read_text(encoding="utf-8")
    for name in ("failure_modes", "online_dpo"):
        for m in json.loads(shipped_study(f"{name}.json").read_text())["matched"].values():
            g = m["gold"]
            assert f"{g['gap_mean']:+.3f} (95 % interval {g['low']:+.3f} … {g['high']:+.3f}: {g['verdict']})" in page


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


@pytest.mark.slow
def test_the_critics_studies_run_fast_and_compare_at_the_same_kl_over_their_seeds(fast_run, tmp_path):
    """The four studies end to end with --fast (two seeds, two online rounds): every comparison is
    read where both frontiers reach, seed by seed, and the report prints each paired difference."""
    import shutil
    from minidpo.harness.report import critics_sections
    from minidpo.harness.runfolder import Run
    from minidpo.studies.diversity import run_diversity
    from minidpo.studies.failure_modes import REMEDIES, run_failure_modes
    from minidpo.studies.online_dpo import run_online_dpo
    from minidpo.studies.overoptimisation import run_overoptimisation
    run, _ = fast_run
    shutil.copytree(run.out, tmp_path / "run")
    run = Run.create(tmp_path / "run", seed=0, fast=True, device="cpu", dtype="fp32", quiet=True)
    fm = run_failure_modes(run)
    assert fm["seeds"] == [0, 1] and set(fm["matched"]) == set(REMEDIES) - {"DPO (default)"}
    for name, m in fm["matched"].items():
        for kl, a, b in zip(m["kl"], fm["points"][name], fm["points"]["DPO (default)"]):
            assert kl == pytest.approx(min(max(p["kl_to_ref"] for p in a), max(p["kl_to_ref"] for p in b)))
        assert m["gold"]["n"] == 2 and m["gold"]["gaps"] == pytest.approx(
            [x - y for x, y in zip(m["a_gold"], m["b_gold"])])
    assert all(len(p) == 4 for per_seed in fm["points"].values() for p in per_seed)  # 3 checkpoints + the end
    div = run_diversity(run)
    assert set(div["table"]) == {"dpo", "rlhf"} and len(div["matched"]["entropy"]["dpo"]) == 2
    assert "train_proxy" in div["table"]["rlhf"]["0.0"] and "train_proxy" not in div["table"]["dpo"]["0.1"]
    online = run_online_dpo(run)
    assert [len(rows) for rows in online["online"]["gold"]] == [2, 2]
    assert online["offline"] == fm["points"]["DPO (default)"]  # the same units: trained once
    over = run_overoptimisation(run)
    assert over["seeds"] == [0, 1] and len(over["penalty"]["kl"]) == 2
    rows = over["per_seed"][0]["best_of_n"]["full"]
    assert all(r["kl_pool"] <= r["kl_bound"] + 1e-9 for r in rows) and rows[-1]["n"] == 64
    text = "\n".join(critics_sections(run))
    for heading in ("## 7. Reward over-optimisation", "## 8. Diversity", "## 10. DPO's own", "## 11. Online DPO"):
        assert heading in text
    assert text.count("no measurable difference") + text.count("above") + text.count("below") >= 5
