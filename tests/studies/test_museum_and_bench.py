"""The museum's costs, the loss bench's table and the PPO-vs-REINFORCE study, read the project's one
way: paired by seed, a 95 % Student-t interval, "no measurable difference" when it covers 0."""
import math

import pytest

from minidpo.studies import loss_bench, museum, ppo_vs_reinforce
from minidpo.studies import frontier as F, units as U

T2 = 4.302653  # the 95 % two-sided Student t quantile with 2 degrees of freedom (3 seeds)


def by_seed(**golds):
    return {name: [{"gold_reward": g} for g in values] for name, values in golds.items()}


def test_a_museum_cost_is_clean_minus_fault_paired_by_seed():
    costs = museum.museum_costs(by_seed(clean=[1.0, 1.2, 0.8], broken=[-1.0, -0.9, -1.3], noisy=[1.1, 0.9, 1.0]))
    broken, noisy = costs["broken"], costs["noisy"]
    assert broken["gaps"] == pytest.approx([2.0, 2.1, 2.1]) and broken["gap_mean"] == pytest.approx(6.2 / 3)
    half = T2 * broken["gap_std"] / math.sqrt(3)
    assert (broken["low"], broken["high"]) == pytest.approx((6.2 / 3 - half, 6.2 / 3 + half))
    assert broken["verdict"] == "above"  # a cost the seeds tell from zero
    # a fault that moves the gold by less than the seed noise: its one-seed "cost" is not a cost
    assert noisy["gaps"] == pytest.approx([-0.1, 0.3, -0.2]) and noisy["verdict"] == "no measurable difference"
    assert set(costs) == {"broken", "noisy"}  # the clean run is the baseline, not a row


def test_the_museum_prints_each_cost_with_its_interval_and_the_seed_noise(capsys):
    golds = by_seed(clean=[1.0, 1.2, 0.8], broken=[-1.0, -0.9, -1.3])
    museum.print_costs({"seeds": [0, 1, 2], "costs": museum.museum_costs(golds),
                        "clean_spread": {"mean": 1.0, "std": 0.2}})
    out = capsys.readouterr().out
    assert "+1.000 ± 0.200 (the seed noise)" in out and "broken" in out and "3 seeds): a cost" in out


def points(method, seed, *kl_gold):
    return [{"method": method, "seed": seed, "labels": "bt", "repeats": 8, "kl_to_ref": k, "gold_reward": g,
             "fluency": 1.0} for k, g in kl_gold]


SFT = {"gold_reward": 0.0, "fluency": 1.0}


def test_the_bench_reads_dpo_minus_each_loss_on_each_seed_s_frontier():
    pts = []
    for seed, lift in enumerate((0.0, 0.05, -0.05)):
        pts += points("sigmoid", seed, (0.5, 0.5 + lift), (1.0, 0.8 + lift))
        pts += points("worse", seed, (0.5, 0.2 + lift), (2.0, 0.9 + lift))   # below DPO at 0.5 in every seed
        pts += points("short", seed, (0.3, 0.4 + lift))                       # never reaches 0.5
    paired = F.paired_table(pts, "bt", SFT, base=loss_bench.BASE)
    result = {"paired": paired}
    # where the worse loss's point at KL 0.5 lies under the chord from the SFT point to its KL-2 point
    # (seeds 0 and 2), its frontier at 0.5 is that chord, (0.9 + lift)/4, not the point (0.2 + lift)
    d = loss_bench.difference(result, "worse", 0.5)
    assert d.diffs == pytest.approx([0.275, 0.3, 0.2375]) and d.verdict == "above"
    assert loss_bench.difference(result, "short", 0.5) is None                 # no seed reaches it
    assert loss_bench.measurable(result, 0.5) == {"worse": "above"}            # DPO above it, beyond the spread
    # at KL 1: on the chord in seeds 0 and 2; in seed 1 between its points at 0.5 and 2
    assert loss_bench.difference(result, "worse", 1.0).diffs == pytest.approx([0.35, 0.85 - (0.25 + 0.7 / 3), 0.325])


def test_ppo_and_reinforce_spend_the_same_samples(fast_run):
    run, _ = fast_run
    budgets = F.budgets(run, ppo_vs_reinforce.METHODS)
    spent = {m: b["samples_per_unit"] for m, b in budgets.items()}
    assert spent[ppo_vs_reinforce.A] == spent[ppo_vs_reinforce.B] == U.rl_samples(run, ppo_vs_reinforce.METHODS[ppo_vs_reinforce.A]) > 0


def test_the_ppo_study_difference_is_the_paired_reading():
    gaps = [0.1, -0.05, 0.02]
    result = {"paired": {"1.0": F.gap_summary(gaps)}}
    d = ppo_vs_reinforce.difference(result, 1.0)
    assert d.diffs == pytest.approx(gaps) and d.mean == pytest.approx(0.07 / 3) and d.verdict == "no measurable difference"
    assert ppo_vs_reinforce.difference(result, 2.0) is None


STUDY_BLOCK = r"<!-- study:{name} -->\n(.*?)\n<!-- /study:{name} -->"
DOC_TABLES = [  # (page, block, the report's renderer, the committed study it renders)
    ("docs/loss-bench.md", "losses_paired", "bench_paired_lines", "losses.json"),
    ("docs/doctor-museum-microscope.md", "museum_costs", "museum_costs_table", "museum.json"),
    ("docs/doctor-museum-microscope.md", "microscope", "microscope_table", "microscope.json"),
]


@pytest.mark.parametrize("page,block,renderer,study", DOC_TABLES, ids=[b for _, b, _, _ in DOC_TABLES])
def test_the_docs_tables_are_the_committed_studies(page, block, renderer, study):
    """Each measured table of the docs is the report's rendering of the study committed in
    data/studies/ (remake it with `report.<renderer>` after rerunning the study)."""
    import re
    from pathlib import Path
    from minidpo.checkpoint import read_json
    from minidpo.harness import report
    root = Path(__file__).resolve().parents[2]
    found = re.search(STUDY_BLOCK.format(name=block), (root / page).read_text(encoding="utf-8"), re.S)
    assert found, f"{page}: no <!-- study:{block} --> block"
    rendered = "\n".join(getattr(report, renderer)(read_json(root / "data" / "studies" / study)))
    assert found.group(1) == rendered, f"{page}: the '{block}' table differs from data/studies/{study}"


def test_the_bench_is_read_at_a_kl_that_dpo_reaches_in_every_seed():
    """Every loss is paired with DPO at the bench's matched KL, so DPO must reach it in every seed:
    here most losses reach KL 1 on all 3 seeds but DPO on 2, and the bench falls back to KL 0.5."""
    reach = lambda *kls: {"matched": {str(k): {"n": n} for k, n in kls}}  # noqa: E731
    rows = {"sigmoid": reach((0.5, 3), (1.0, 2)), **{f"l{i}": reach((0.5, 3), (1.0, 3)) for i in range(4)}}
    assert loss_bench.bench_kl(rows, 3) == 0.5
    rows["sigmoid"] = reach((0.5, 3), (1.0, 3))
    assert loss_bench.bench_kl(rows, 3) == 1.0
