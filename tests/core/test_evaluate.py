"""The evaluation's win rate is the DPO paper's: P[r*(y_π) > r*(y_SFT)] for independent samples of
the policy and the SFT baseline, ties ½. Sampling both with one random stream couples them."""
import statistics


def test_the_sft_model_against_itself_wins_half_the_time_with_few_ties(fast_run):
    run, _ = fast_run
    sft = run.load_policy("sft.pt")
    baseline = run.sft_gold()
    ev = run.evaluate(sft)                      # the default: sampled independently of the baseline
    n = len(ev["gold"])
    assert n == len(baseline) == 200
    outcomes = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(ev["gold"], baseline)]
    se = statistics.pstdev(outcomes) / n ** 0.5
    assert abs(ev["win_rate_vs_sft"] - 0.5) < 3 * se, (ev["win_rate_vs_sft"], se)
    assert ev["ties_vs_sft"] < 0.15             # far below 50 %: ties only where two draws score alike
    assert ev["gold"] != baseline               # not the baseline's own samples
    coupled = run.evaluate(sft, coupled=True)   # the option: the baseline's own random stream
    assert "win_rate_vs_sft" not in coupled      # never reported under the win rate's name
    assert coupled["ties_vs_sft_coupled"] == 1.0 and coupled["win_rate_vs_sft_coupled"] == 0.5
    assert coupled["gold"] == baseline           # SFT repeats its baseline sample for sample
