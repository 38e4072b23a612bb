"""The bridge: each rung's condition shown with numbers, exact sums checked against sampling, the
reading at matched KL, the study's JSON and its figure."""
import math

import pytest
import torch

from minidpo import bandit as B
from minidpo.studies import bridge as BR
from minidpo.studies import bridge_world as W
from minidpo.studies.microscope import END, all_responses, sampled_kl


@pytest.fixture(scope="module")
def world():
    return BR.world_of(0)


# --- the enumerable world ---------------------------------------------------------------------------------
def test_the_gold_reward_has_the_shape_its_docstring_says():
    good, fine, bad = range(3)
    assert W.gold_reward([good, fine, END]) == pytest.approx(1.3) == W.gold_table().max().item()
    assert W.gold_reward([END]) == -2.0                                  # empty
    assert W.gold_reward([good, good, END]) == pytest.approx(0.5)        # a repeat: −0.5, not +1
    assert W.gold_reward([good, fine, bad]) == pytest.approx(1.3 - 1 - 1)  # cut at the limit: −1
    assert W.words([good, fine, END]) == "good fine ." and len(W.gold_table()) == 40


def test_strongly_linked_keeps_what_beats_and_is_beaten():
    # 0 > 1 > 2 > 0 is a cycle (all linked); 3 only wins, 4 only loses, 5 is in no pair
    pairs = [(0, 1), (1, 2), (2, 0), (3, 0), (1, 4)]
    assert W.strongly_linked(pairs, 6) == [0, 1, 2]


def test_the_pairs_come_from_the_reference_and_every_kept_one_is_linked(world):
    assert world.drawn == BR.N_PAIRS and 0 < len(world.pairs) <= world.drawn
    linked = set(world.linked)
    assert all(w in linked and l in linked and w != l for w, l in world.pairs)
    assert sorted(world.linked + world.unlinked) == list(range(40)) and len(world.unlinked) >= 5
    # Bradley–Terry on the gold reward: of the pairs whose gold differs, the higher-gold response wins
    # more often than not, not always (equal gold, e.g. "bad fine ." and "fine bad .", is a coin toss)
    differ = [(w, l) for w, l in world.pairs if world.gold[w] != world.gold[l]]
    agree = sum(bool(world.gold[w] > world.gold[l]) for w, l in differ) / len(differ)
    assert len(differ) > len(world.pairs) / 2 and 0.6 < agree < 0.98


# --- the rungs ----------------------------------------------------------------------------------------------
def test_rung0_the_roads_meet_to_the_solvers_tolerance(world):
    m = BR.measure(BR.rung0_theorem(world))
    assert m["tv_dpo_rlhf"] <= 1e-8 and m["tv_dpo_opt"] <= 1e-8 and m["tv_rlhf_opt"] <= 1e-8
    assert m["unseen_responses"] == 0 and m["kl_dpo"] > 0.05  # it moved: the equality is not trivial


def test_rung1_dpo_is_flat_on_unlinked_logits_and_its_minimiser_depends_on_the_start(world):
    r = BR.rung1_unlinked(world)
    e = r.extra
    assert e["grad_unlinked_max"] < 1e-15 < 1e-3 < e["grad_linked_max"]          # 0 to rounding
    assert abs(e["dpo_loss"] - e["dpo_loss_other_start"]) < 1e-10                # the same loss ...
    assert e["tv_dpo_other_start"] > 0.005                                        # ... another policy
    # from the reference, DPO and the zero-started tabular reward model make the same choice
    assert BR.measure(r)["tv_dpo_rlhf"] < 1e-6


def test_rung1_gradient_check_goes_red_when_the_normaliser_does_not_cancel(world):
    """The flat direction is a property of the loss: a loss that reads log π(y_w) alone (no
    difference, so no cancellation) has a gradient on unlinked logits."""
    theta = world.ref_logp.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, -1)
    (-logp[world.winners].mean()).backward()
    assert theta.grad[world.unlinked].abs().max() > 1e-4


def test_a_gpt_policys_exact_sums_agree_with_sampling_it(world):
    """What rungs 2–4 rest on, quickly: a GPT policy moved off the reference (30 DPO steps), its 40
    exact probabilities (`exact_logps`) against the frequencies of 6,000 responses sampled token by
    token, its exact KL against the sampled estimate, and π*(r̂) as eq. 4 summed by hand."""
    model, path = BR.gpt_solve(world, lambda logp: BR.dpo_pair_loss(logp, world), 30)
    logp, _ = BR.solved_logps((model, path))
    assert abs(logp.exp().sum().item() - 1) < 1e-10 and path[-1] == BR.point(logp, world.ref_logp, world.gold)
    n, g = 6000, torch.Generator().manual_seed(0)
    index = {tuple(y): i for i, y in enumerate(all_responses())}
    with torch.no_grad():
        drawn = model.generate([[END]] * n, 3, 1.0, stop_id=END, generator=g)
    freq = torch.bincount(torch.tensor([index[tuple(y)] for y in drawn]), minlength=40).double() / n
    p = logp.exp()
    assert ((freq - p).abs() <= 4.5 * (p * (1 - p) / n).sqrt() + 1e-4).all()
    est, se = sampled_kl(model, world.reference, 2000, 1)
    assert abs(est - B.kl(logp, world.ref_logp).item()) < 4 * se
    r = BR.tabular_reward(world)
    by_hand = world.ref_logp.exp() * torch.exp(r / BR.BETA)
    assert torch.allclose(B.optimal_logp(world.ref_logp, r, BR.BETA).exp(), by_hand / by_hand.sum(), atol=1e-14)


@pytest.fixture(scope="module")
def rung2(world):
    return BR.rung2_gpt_policy(world, steps=BR.FAST_EXACT_STEPS)


@pytest.mark.slow  # three GPT solves of 300 steps: seconds on an idle machine, minutes on a loaded one
def test_rung2_every_policy_is_an_exact_sum_over_the_responses(world, rung2):
    for logp in (rung2.dpo, rung2.rlhf, rung2.optimum, rung2.ref):
        assert abs(logp.exp().sum().item() - 1) < 1e-10
    # π*(r̂) is eq. 4 written out over the 40 responses
    by_hand = world.ref_logp.exp() * torch.exp(rung2.reward / rung2.beta)
    assert torch.allclose(rung2.optimum.exp(), by_hand / by_hand.sum(), atol=1e-14)


@pytest.mark.slow
def test_rung2_exact_probabilities_agree_with_sampling(world, rung2):
    """The DPO policy of rung 2 sampled token by token: response frequencies and the KL estimate
    agree with the exact sums within their sampling error."""
    model, _ = BR.gpt_solve(world, lambda logp: BR.dpo_pair_loss(logp, world), BR.FAST_EXACT_STEPS)
    assert torch.allclose(BR.solved_logps((model, []))[0], rung2.dpo, atol=0)  # deterministic: the rung's policy
    n, g = 20000, torch.Generator().manual_seed(0)
    index = {tuple(y): i for i, y in enumerate(all_responses())}
    with torch.no_grad():
        drawn = model.generate([[END]] * n, 3, 1.0, stop_id=END, generator=g)
    freq = torch.bincount(torch.tensor([index[tuple(y)] for y in drawn]), minlength=40).double() / n
    p = rung2.dpo.exp()
    assert ((freq - p).abs() <= 4.5 * (p * (1 - p) / n).sqrt() + 1e-4).all()
    est, se = sampled_kl(model, world.reference, 4000, 1)
    assert abs(est - B.kl(rung2.dpo, world.ref_logp).item()) < 4 * se


@pytest.mark.slow
def test_rung2_shared_parameters_move_the_unseen_responses_the_tabular_reward_does_not(world, rung2):
    m = BR.measure(rung2)
    assert abs(m["unseen_mass_rlhf"] - m["unseen_mass_opt"]) < 0.01  # RL exact on r̂: close to π*(r̂) there
    assert abs(m["unseen_mass_dpo"] - m["unseen_mass_opt"]) > 0.01   # DPO's GPT put other mass there
    assert m["tv_dpo_rlhf"] > 10 * BR.measure(BR.rung1_unlinked(world))["tv_dpo_rlhf"]


def test_the_reward_model_scores_every_response_as_one_by_one(world):
    rm = BR.reward_model_from(world)
    with torch.no_grad():
        rm.head.weight.normal_()
        table = BR.rm_rewards(rm)
        from minidpo.data import collate
        one = [rm.raw(*collate([r], END)).item() for r in BR.response_rows()[:5]]
    assert torch.allclose(table[:5], torch.tensor(one, dtype=table.dtype), atol=1e-12)


# --- reading at matched KL ------------------------------------------------------------------------------------
def test_matched_reads_every_road_at_the_largest_kl_all_reach_and_pairs_by_seed():
    paths = {"dpo": [[(1.0, 1.0), (2.0, 1.5)], [(1.0, 0.8), (3.0, 1.6)]],
             "rlhf": [[(2.0, 2.0)], [(1.5, 1.7)]]}
    m = BR.matched(paths, [0.0, 0.0])
    assert m["kl"] == 1.5                                   # seed 1's RLHF reaches only 1.5
    assert m["gold"]["dpo"] == pytest.approx([1.25, 0.8 + 0.8 * 0.25])
    assert m["gold"]["rlhf"] == pytest.approx([1.5, 1.7])   # chord from the start: 2.0 × 1.5/2
    assert m["difference"]["gaps"] == pytest.approx([0.25, 1.7 - 1.0])
    assert m["share"] == pytest.approx([0.25 / 1.5, 0.7 / 1.7])


# --- the study's JSON and its figure ---------------------------------------------------------------------
KEYS = ("rung", "name", "tv_dpo_rlhf", "gold_dpo", "gold_rlhf", "kl_dpo", "kl_rlhf", "unseen_mass_dpo",
        "unseen_mass_rlhf", "tv_dpo_opt", "tv_rlhf_opt", "kl_dpo_opt", "kl_rlhf_opt")


def fake_unit(k: int, seed: int) -> dict:
    """One rung's unit as `compute_rung` writes it, with made-up numbers (they differ by rung and seed)."""
    x = 0.1 * k + 0.01 * seed
    numbers = {key: x + i / 100 for i, key in enumerate(BR.SUMMED)}
    return {"rung": k, "name": f"rung {k}", "seed": seed, **numbers, "gold_ref": 0.0,
            "paths": {"dpo": [(0.0, 0.0), (1.0, 0.5 + x)], "rlhf": [(0.0, 0.0), (2.0, 1.0 + x)]}}


def fake_result(seeds=(0, 1, 2)) -> dict:
    """A study result made by the study's own summaries from made-up units and toy-world points."""
    rungs = [BR.summarise_rung([fake_unit(k, s) for s in seeds]) for k in range(5)]
    paths = {road: [[(0.5, 0.2 + i + s / 10), (2.0, 0.6 + i + s / 10)] for s in seeds]
             for i, road in enumerate(("dpo", "rlhf", "online_dpo"))}
    toy = {"seeds": list(seeds), "start_gold": 0.0, "paths": paths,
           "final": {road: [p[-1] for p in ps] for road, ps in paths.items()}, "budgets": {},
           "default_run": {"tv_dpo_rlhf": 0.4, "tv_dpo_rlhf_se": 0.02, "kl_dpo_rlhf": 1.0, "kl_dpo_rlhf_se": 0.1,
                           "unseen_mass": {r: {"mass": 0.5, "se": 0.05} for r in ("dpo", "rlhf", "ref")}}}
    rungs.append(BR.summarise_toy(toy))
    return {"rungs": rungs, "attribution": BR.attribution(rungs)}


def test_every_rung_of_the_json_has_the_issues_keys_with_a_spread():
    result = fake_result()
    assert [r["rung"] for r in result["rungs"]] == [0, 1, 2, 3, 4, 5]
    for r in result["rungs"]:
        assert set(KEYS) <= set(r), r["rung"]
        spread = "_se" if r["rung"] == 5 else "_std"
        assert f"tv_dpo_rlhf{spread}" in r and "gold_dpo_std" in r and len(r["seeds"]) == 3
    r2 = result["rungs"][2]
    assert r2["values"]["tv_dpo_rlhf"] == [fake_unit(2, s)["tv_dpo_rlhf"] for s in (0, 1, 2)]
    assert r2["tv_dpo_rlhf"] == pytest.approx(0.2 + 0.01)            # the mean over the seeds
    assert r2["tv_dpo_rlhf_std"] == pytest.approx(0.01)               # and its spread
    # rung 5 at matched KL: online DPO, DPO and RLHF on the same chord from the start
    m = result["rungs"][5]["matched"]
    assert m["kl"] == 2.0 and m["gold"]["rlhf"] == pytest.approx([1.6, 1.7, 1.8])


def test_the_figures_numbers_are_the_studys_json():
    from minidpo.harness.plots import bridge_figure
    result = fake_result()
    fig = bridge_figure(result)
    a, b, c = fig.axes[:3]
    y = lambda ax: [list(e.lines[0].get_ydata()) for e in ax.containers]  # noqa: E731  each errorbar's points
    rungs = result["rungs"]
    assert y(a) == [[r["tv_dpo_rlhf"] for r in rungs[:5]], [rungs[5]["tv_dpo_rlhf"]]]
    assert y(b) == [[r["matched"]["gold_dpo"] for r in rungs[:5]], [r["matched"]["gold_rlhf"] for r in rungs[:5]]]
    m = rungs[5]["matched"]
    assert y(c) == [[m["gold_dpo"], m["gold_rlhf"], m["gold_online_dpo"]]]


def test_the_committed_study_when_shipped_has_every_rung_and_rung0_meets():
    from minidpo.checkpoint import read_json
    from minidpo.harness.tutorial import shipped_study
    found = shipped_study("bridge/bridge.json")
    if found is None:
        pytest.skip("data/studies/bridge.json is not committed yet (the lead runs the full study)")
    shipped = read_json(found)
    assert [r["rung"] for r in shipped["rungs"]] == [0, 1, 2, 3, 4, 5] and len(shipped["seeds"]) >= 3
    assert max(shipped["rungs"][0]["values"]["tv_dpo_rlhf"]) <= 1e-8


def test_the_study_is_registered_as_a_long_study_with_its_outputs():
    from minidpo.harness.cli import build_parser
    from minidpo.harness.stages import LONG_STUDIES, STAGES
    assert "bridge" in LONG_STUDIES and STAGES["bridge"].outputs[0] == "bridge/bridge.json"
    args = build_parser().parse_args(["bridge", "--fast"])
    assert args.command == "bridge" and args.fast


@pytest.mark.slow
def test_the_fast_study_writes_bridge_json_and_its_figure(fast_studies):
    """--fast end to end in a copy of the tiny run with the Figure 2 study's units: rung 5 reuses
    its DPO units (none trained again), the JSON holds every rung and the figure is drawn from it."""
    import shutil
    from minidpo.harness.runfolder import Run
    out = fast_studies.out.parent / "bridge_run"
    shutil.copytree(fast_studies.out, out)
    run = Run.create(out, seed=0, fast=True, device="cpu", dtype="fp32", quiet=True)
    result = BR.run_bridge(run)
    assert [r["rung"] for r in result["rungs"]] == [0, 1, 2, 3, 4, 5]
    assert not [n for n in run.computed if n.startswith("dpo_beta")]  # the frontier's DPO units, reused
    assert (out / "bridge" / "bridge.png").is_file()
    assert max(result["rungs"][0]["values"]["tv_dpo_rlhf"]) <= 1e-8
    from minidpo.checkpoint import read_json
    assert read_json(out / "bridge" / "bridge.json") == result
    again = Run.create(out, seed=0, fast=True, device="cpu", dtype="fp32", quiet=True)
    assert BR.run_bridge(again) == result and "bridge" in again.reused
