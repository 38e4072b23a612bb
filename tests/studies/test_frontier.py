"""The Figure 2 study: its hull arithmetic, the label switch, PPO-GT against PPO, and the
--fast study end to end (every method and seed present)."""
import math

import pytest

from minidpo.studies import ablation as A, frontier as F, units as U
from minidpo.studies.ablation import primary_kl

SFT = {"gold_reward": 0.0, "fluency": 0.9}


def pt(method, kl, gold, seed=0, labels="bt", repeats=8, fluency=0.9):
    return {"method": method, "kl_to_ref": kl, "gold_reward": gold, "fluency": fluency, "seed": seed,
            "labels": labels, "repeats": repeats}


def test_the_frontier_is_the_upper_concave_hull_made_flat_past_its_best_point():
    points = [pt("dpo", 1.0, 0.5), pt("dpo", 0.5, 0.6), pt("dpo", 2.0, 0.4), pt("dpo", 3.0, 1.0), pt("dpo", 4.0, 0.2)]
    hull = F.hull(points, SFT)
    # (0.5, 0.6) lies under the chord from SFT to (3, 1.0)? 0.5/3 of the way: 0.167 < 0.6, so it stays a vertex;
    # (1, 0.5) and (2, 0.4) lie under the chord from (0.5, 0.6) to (3, 1.0); past the best point the frontier is flat
    assert [(k, g) for k, g, _ in hull] == [(0.0, 0.0), (0.5, 0.6), (3.0, 1.0), (4.0, 1.0)]
    assert F.at_kl(hull, 0.25) == pytest.approx((0.3, 0.9))                   # on the chord from SFT
    assert F.at_kl(hull, 1.75)[0] == pytest.approx(0.6 + (1.25 / 2.5) * 0.4)  # between two vertices
    assert F.at_kl(hull, 3.5)[0] == pytest.approx(1.0)                       # a budget need not be spent
    assert F.at_kl(hull, 4.5) is None                                         # never extrapolated


def test_matched_table_averages_only_the_seeds_that_reach_a_kl():
    points = [pt("ppo", 1.0, 1.0, seed=0), pt("ppo", 2.0, 2.0, seed=0), pt("ppo", 1.0, 0.5, seed=1),
              pt("ppo", 1.0, 3.0, seed=2, labels="deterministic")]
    row = F.matched_table(points, "bt", SFT)["ppo"]
    assert row["1.0"]["n"] == 2 and row["1.0"]["values"] == [1.0, 0.5]
    assert row["1.0"]["gold_mean"] == pytest.approx(0.75) and row["1.0"]["gold_std"] == pytest.approx(math.sqrt(0.125))
    assert row["2.0"]["n"] == 1 and "4.0" not in row
    # PPO-GT's points (labels "gold") count under every labelling condition
    gold = [pt("ppo_gt", 1.0, 2.0, seed=0, labels="gold", repeats=None)]
    assert F.matched_table(gold, "deterministic", SFT)["ppo_gt"]["1.0"]["gold_mean"] == 2.0


def test_ablation_gaps_are_paired_by_seed():
    points = []
    for seed, (d, r) in enumerate([(1.0, 0.5), (0.8, 0.9), (1.2, 0.4)]):
        points += [pt("dpo", 2.0, d, seed=seed, repeats=32), pt("reinforce", 2.0, r, seed=seed, repeats=32),
                   pt("dpo", 2.0, 9.0, seed=seed, repeats=8)]  # another data size: not this row's
    gaps = F.paired_gaps(points, "dpo", "reinforce", "bt", 1.0, SFT, repeats=32)
    assert gaps == pytest.approx([0.25, -0.05, 0.4])  # each read at KL 1 on the line from SFT
    summary = F.gap_summary(gaps)
    assert summary["n"] == 3 and summary["gap_mean"] == pytest.approx(0.2)
    # the 95 % Student-t interval over 3 seeds: mean ± 4.303·std/√3 covers 0 here
    half = 4.302653 * summary["gap_std"] / 3 ** 0.5
    assert summary["low"] == pytest.approx(0.2 - half, abs=1e-5) and summary["high"] == pytest.approx(0.2 + half, abs=1e-5)
    assert summary["verdict"] == "no measurable difference" and not summary["beyond_spread"]
    # a seed that one method's hull does not reach drops out of the pair, not out of one side
    points.append(pt("ppo", 0.5, 0.1, seed=0, repeats=32))
    points += [pt("ppo", 2.0, 1.0, seed=s, repeats=32) for s in (1, 2)]
    assert F.paired_gaps(points, "dpo", "ppo", "bt", 1.0, SFT, repeats=32) == pytest.approx([-0.1, 0.1])  # seeds 1, 2
    table = F.paired_table(points, "bt", SFT, repeats=32)
    assert set(table) == {"ppo", "reinforce"} and table["ppo"]["1.0"]["n"] == 2
    rows = [{"by_kl": {"1.0": {"n": 3}, "2.0": {"n": 3}, "4.0": {"n": 1}}}]
    assert primary_kl(rows) == 2.0


def test_loss_bench_ranks_losses_reaching_the_kl_in_every_seed_first():
    from minidpo.studies.loss_bench import bench_rank
    row = lambda matched, final: {"matched": matched, "gold_reward": {"mean": final}}
    rows = {"lucky": row({"0.5": {"n": 1, "gold_mean": 2.0}}, 0.9),   # one seed of three got there
            "steady": row({"0.5": {"n": 3, "gold_mean": 0.4}}, 0.7),
            "better": row({"0.5": {"n": 3, "gold_mean": 0.6}}, 0.5),
            "never": row({}, 1.5)}
    assert sorted(rows, key=lambda n: bench_rank(rows[n], 0.5, 3)) == ["better", "steady", "never", "lucky"]


def test_deterministic_labels_always_choose_the_better_response(fast_run):
    import random
    from minidpo.preferences import label_pair
    rng = random.Random(0)
    prompt = "Review: The Silent Harbor"
    good, bad = "The acting was brilliant.", "The acting was dull."
    assert all(label_pair(rng, prompt, bad, good, labels="deterministic")["chosen"] == good for _ in range(50))
    noisy = [label_pair(rng, prompt, bad, good)["chosen"] == good for _ in range(2000)]
    assert abs(sum(noisy) / 2000 - 1 / (1 + math.exp(-1.6))) < 0.03  # σ(1.0 − (−0.6)) under Bradley–Terry
    with pytest.raises(ValueError, match="labels must be one of"):
        label_pair(rng, prompt, bad, good, labels="majority")


def test_ppo_on_the_gold_reward_beats_ppo_on_the_learned_one_at_matched_kl(fast_run, tmp_path):
    """The sanity check of the learned reward: PPO-GT's samples reach at least PPO's gold reward
    at the same KL (each method's hull over its training steps, 5-step means)."""
    from minidpo.ppo import PPOConfig, train_ppo
    run, _ = fast_run
    curves = {}
    for reward in ("learned", "gold"):
        m = train_ppo(PPOConfig.fast(steps=20, reward=reward), run.tok, run.path("sft.pt"),
                      run.path("reward_model.pt"), tmp_path, quiet=True, out_name=f"ppo_{reward}")
        h = m["history"]
        smooth = [{k: sum(r[k] for r in h[i - 5:i]) / 5 for k in ("kl_k1", "gold_reward", "fluency")}
                  for i in range(5, len(h) + 1)]
        sft = {"gold_reward": h[0]["gold_reward"], "fluency": h[0]["fluency"]}
        curves[reward] = F.hull([{"kl_to_ref": r["kl_k1"], **r} for r in smooth], sft)
    reached = min(curves["learned"][-1][0], curves["gold"][-1][0])
    assert reached > 0.3
    for kl in (reached / 2, reached):
        assert F.at_kl(curves["gold"], kl)[0] >= F.at_kl(curves["learned"], kl)[0]


@pytest.mark.slow  # the tiny Figure 2 and ablation, end to end (the slow tier)
def test_frontier_fast_has_every_method_seed_and_condition(fast_studies):
    run = fast_studies
    result = F.read_json(run.out / "frontier" / "frontier.json")
    seen = {(p["method"], p["labels"], p["seed"]) for p in result["points"]}
    fast = {name for name, m in F.METHODS.items() if m.fast_grid}  # every trainer: dpo, rlhf, ppo (both rewards), grpo
    assert {F.METHODS[m].trainer for m in fast} == {"dpo", "rlhf", "ppo", "grpo"} and "ppo_gt" in fast
    assert set(result["methods"]) == fast and not {p["method"] for p in result["points"]} - fast
    for m in (F.METHODS[name] for name in fast):
        for labels in (F.LABELS if m.uses_labels else ("gold",)):
            for seed in result["seeds"]:
                assert (m.name, labels, seed) in seen
    assert result["seeds"] == [0, 1] and set(result["matched"]) == set(F.LABELS)
    assert set(result["matched"]["bt"]) == fast
    assert all(math.isfinite(p["gold_reward"]) and p["kl_to_ref"] > -1 for p in result["points"])
    assert (run.out / "frontier" / "frontier.png").stat().st_size > 20_000
    ablation = F.read_json(run.out / "frontier" / "ablation.json")
    assert [r["rl_method"] for r in ablation["rows"]] == ["reinforce"] * 4


def _units(points):
    """{(method, labels, seed, grid point): its points}"""
    import json
    units = {}
    for p in points:
        units.setdefault((p["method"], p["labels"], p["seed"], json.dumps(p["grid"], sort_keys=True)), []).append(p)
    return units


@pytest.mark.slow  # the tiny Figure 2 and ablation, end to end (the slow tier)
def test_every_rl_unit_of_the_fast_frontier_samples_the_same_budget_and_the_ablation_its_rows(fast_studies):
    """Every RL unit of the frontier draws the same number of responses (steps adapt to each
    method's batch shape); the pair learners sample none; each ablation row's RL units draw that
    row's budget (a tenth of the full one with --fast), the budget row raising REINFORCE's alone."""
    run = fast_studies
    rl = {m.name for m in F.METHODS.values() if m.trainer != "dpo"}
    result = F.read_json(run.out / "frontier" / "frontier.json")
    units = _units(result["points"])
    assert {m for m, *_ in units} == {name for name, m in F.METHODS.items() if m.fast_grid}
    for (method, *_), points in units.items():
        spent = max(p["samples"] for p in points)
        assert spent == (F.FAST_RL_SAMPLES if method in rl else 0), method
        assert all(p["of_samples"] == spent and p["samples"] <= spent for p in points)
    budgets = result["budgets"]
    assert {budgets[m]["samples_per_unit"] for m in rl} == {F.FAST_RL_SAMPLES}
    assert {budgets[m]["steps"] * budgets[m]["samples_per_step"] for m in rl} == {F.FAST_RL_SAMPLES}
    ablation = F.read_json(run.out / "frontier" / "ablation.json")
    for row, spec in zip(ablation["rows"], A.ROWS):
        assert row["samples"] == {"dpo": [0], "rl": [spec.rl_samples // U.FAST_DIVISOR]}
        assert row["rl_samples"] == spec.rl_samples // U.FAST_DIVISOR
    first, second = ablation["rows"][:2]  # the budget row: REINFORCE's samples, nothing else
    assert second["samples"]["rl"][0] > first["samples"]["rl"][0] and second["steps"]["dpo"] == first["steps"]["dpo"]
    assert (first["labels"], first["pairs_multiplier"]) == (second["labels"], second["pairs_multiplier"])


@pytest.mark.slow  # the tiny Figure 2 and ablation, end to end (the slow tier)
def test_every_row_of_the_ablation_gives_each_method_the_same_grid_and_its_steps_pair_by_seed(fast_studies):
    ablation = F.read_json(fast_studies.out / "frontier" / "ablation.json")
    grids = {}
    for row in ablation["rows"]:   # the grid points the row's numbers actually came from
        grids.setdefault("dpo", []).append(row["grids"]["dpo"])
        grids.setdefault(row["rl_method"], []).append(row["grids"]["rl"])
    assert len(grids["dpo"]) == 4 and set(grids) == {"dpo", "reinforce"}
    for method, per_row in grids.items():
        assert all(g == per_row[0] for g in per_row), method       # equal across the rows
        assert per_row[0] == [F.METHODS[method].fast_grid[0]] and len(per_row[0]) == 1
    for above, row in zip(ablation["rows"], ablation["rows"][1:]):  # a row's step: its gap minus the row above's
        for kl, step in row["step"].items():
            now, before = row["by_kl"][kl], above["by_kl"][kl]
            gaps = lambda c: [d - r if d is not None and r is not None else None
                              for d, r in zip(c["per_seed"]["dpo"], c["per_seed"]["rl"])]
            both = [(a, b) for a, b in zip(gaps(now), gaps(before)) if a is not None and b is not None]
            if step:
                assert step["gaps"] == pytest.approx([a - b for a, b in both]) and step["n"] == len(both)


def test_the_full_studies_give_every_rl_method_one_budget_and_the_ablation_one_beta_each(tmp_path):
    """The full settings, without training: the same sample budget for every RL method of the
    frontier whatever its batch shape; ONE_BETA names every method of every ablation row (PPO-GT
    too); the budget row moves REINFORCE from the frontier's 2,560 to the pipeline's own samples."""
    from minidpo.harness.runfolder import Run
    from minidpo.rlhf import RLHFConfig
    run = Run(tmp_path, fast=False)
    budgets = F.budgets(run, F.METHODS)
    rl = [m.name for m in F.METHODS.values() if m.trainer != "dpo"]
    assert {budgets[m]["samples_per_unit"] for m in rl} == {F.RL_SAMPLES} == {2560}
    assert all(budgets[m]["steps"] * budgets[m]["samples_per_step"] == F.RL_SAMPLES for m in rl)
    assert {"dpo"} | {row.rl for row in A.ROWS} <= set(A.ONE_BETA)
    assert all(len(A.ONE_BETA[m]) == 1 for m in A.ONE_BETA)
    pipeline = RLHFConfig()
    assert A.PIPELINE_BUDGET == pipeline.steps * pipeline.prompts_per_step * pipeline.k == 9600
    assert [row.rl_samples for row in A.ROWS] == [2560] + [9600] * 3
    for row in A.ROWS:  # every RL unit of the row spends exactly the row's budget
        m = A.row_methods(row, fast=False)["rl"]
        cfg = U.unit_config(run, m, m.grid[0], 0)
        assert cfg.steps * U.samples_per_step(cfg) == row.rl_samples


def test_the_data_row_keeps_every_learners_steps(tmp_path):
    """Equal footing in the data row: 4× the pairs, and DPO and the reward model take the steps of
    two epochs over the default pairs (one pass in batches twice as large), RL its same samples."""
    from minidpo.harness.runfolder import Run
    from minidpo.reward_model import RMConfig
    run = Run(tmp_path, fast=False)
    row = next(r for r in A.ROWS if r.pairs == 4)
    above = A.ROWS[A.ROWS.index(row) - 1]
    assert row.same_steps and above.pairs == 1 and row.rl_samples == above.rl_samples
    n = 2798  # the default pairs (8 prompts per film)
    steps = lambda cfg, pairs: cfg.epochs * math.ceil(pairs / cfg.batch_size)
    dpo = {r: U.unit_config(run, A.row_methods(r, fast=False)["dpo"], A.ONE_BETA["dpo"], 0) for r in (above, row)}
    assert abs(steps(dpo[row], 4 * n) - steps(dpo[above], n)) <= 1  # the last partial batch aside
    rm_above = U.rm_config(run, 0)
    rm_row = U.rm_config(run, 0, A.row_cells(run, row, 8)[0][3])
    assert rm_above == run.settings(RMConfig, seed=0) and abs(steps(rm_row, 4 * n) - steps(rm_above, n)) <= 1
    assert A.row_cells(run, row, 8)[0][2] == 32 and A.row_cells(run, above, 8)[0][2] == 8


def _shipped():
    from minidpo.harness.tutorial import shipped_study
    found = [shipped_study(f"frontier/{name}.json") for name in ("frontier", "ablation")]
    if None in found:
        pytest.skip("no data/studies/ yet")
    return [F.read_json(f) for f in found]


def _running_max(points, sft):
    """The old envelope: each point kept when it beats every point at lower KL, joined by lines."""
    kept = [(0.0, sft["gold_reward"], sft["fluency"])]
    for q in sorted((p["kl_to_ref"], p["gold_reward"], p["fluency"]) for p in points if p["kl_to_ref"] > 0):
        if q[1] > kept[-1][1]:
            kept.append(q)
    return kept


def test_on_the_shipped_study_dpo_over_both_betas_reads_at_least_beta_half_alone():
    """Issue 32's measured case, on the full study's own points: deterministic labels, DPO at KL 1,
    seeds 0–2 (the ablation's deterministic row reads β = 0.5 alone). With the old grid the running
    maximum over β ∈ {0.1, 0.5} read below β = 0.5 alone; on this study's points it does not, so only
    the hull's rule is asserted: over both it reads at least β = 0.5 alone, in every seed and at every
    matched KL (a running maximum that falls: tests/harness/test_compare.py)."""
    frontier, ablation = _shipped()
    sft, points = frontier["sft"], frontier["points"]
    mean = lambda xs: sum(xs) / len(xs)
    reading = {}
    for name, pick in (("alone", lambda p: p["beta"] == 0.5), ("both", lambda p: True)):
        for how, build in (("hull", lambda pts: F.hull(pts, sft)), ("running", lambda pts: _running_max(pts, sft))):
            per_seed = [F.at_kl(build([p for p in F.points_of(points, "dpo", "deterministic", s) if pick(p)]), 1.0)[0]
                        for s in frontier["seeds"]]
            reading[(name, how)] = mean(per_seed)
    row = next(r for r in ablation["rows"] if r["labels"] == "deterministic" and r["pairs_multiplier"] == 1)
    assert reading[("alone", "hull")] == pytest.approx(row["by_kl"]["1.0"]["dpo"]["gold_mean"], abs=1e-12)
    assert reading[("both", "hull")] >= reading[("alone", "hull")]         # the hull cannot
    for seed in frontier["seeds"]:
        alone = F.hull([p for p in F.points_of(points, "dpo", "deterministic", seed) if p["beta"] == 0.5], sft)
        both = F.hull(F.points_of(points, "dpo", "deterministic", seed), sft)
        for kl in F.KL_TARGETS:
            if F.at_kl(alone, kl) is not None:
                assert F.at_kl(both, kl)[0] >= F.at_kl(alone, kl)[0] - 1e-12


def test_on_the_shipped_study_no_unit_lowers_its_methods_hull():
    """The hull's property on real points: for every method, condition and seed, the hull without one
    of its units never reads above the hull with it, at any matched KL it reaches."""
    import json
    frontier, _ = _shipped()
    sft = frontier["sft"]
    checked = 0
    for labels in frontier["labels"]:
        for method in frontier["methods"]:
            for seed in frontier["seeds"]:
                pts = F.points_of(frontier["points"], method, labels, seed)
                units = {json.dumps({"beta": p.get("beta")}) for p in pts}
                for unit in units:
                    without = [p for p in pts if json.dumps({"beta": p.get("beta")}) != unit]
                    for kl in F.KL_TARGETS:
                        less, full = F.at_kl(F.hull(without, sft), kl), F.at_kl(F.hull(pts, sft), kl)
                        if less is not None:
                            assert full is not None and full[0] >= less[0] - 1e-12
                            checked += 1
    assert checked > 100

