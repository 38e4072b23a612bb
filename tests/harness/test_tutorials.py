"""Every tutorial runs end to end with --fast (in this process: one torch import for all, cell by
cell as its notebook runs), and the numbers its markdown promises hold: read from the lesson's own
variables."""
import math
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from minidpo.checkpoint import read_json

TUTORIALS = sorted(Path(__file__).resolve().parents[2].glob("tutorials/[0-9][0-9]_*.py"))
LN2 = math.log(2)


@pytest.fixture(scope="module")
def folder(fast_studies, tmp_path_factory):
    out = tmp_path_factory.mktemp("tutorials") / "run"
    shutil.copytree(fast_studies.out, out)  # reuse the trained tiny stages and studies
    return out


def test_the_tutorials_are_numbered_without_gaps():
    assert [p.name[:2] for p in TUTORIALS] == [f"{i:02d}" for i in range(1, len(TUTORIALS) + 1)]


def check_01(g, out):
    assert len(g["ranks"]) > 256 and g["tok"].vocab_size == len(g["ranks"]) + 3
    assert g["merges_learned"] == len(g["ranks"]) - 256 <= g["knobs"].merges
    assert all(g["shipped"].decode(g["shipped"].encode(s)) == s for s in ["Très bien! 🙂", "世界 \x00\t<|end|>"])
    assert g["shipped"].end_id not in g["typed_end"] and len(g["typed_end"]) > 1  # typed "<|end|>" is plain text
    assert len(g["single"]) >= 0.8 * len(g["words"])  # the answer: most words are one token
    # a binding budget of 64 merges: the words split into one-token and several-token ones, counted
    assert g["whole"] and g["rest"] and set(g["whole"]) | set(g["rest"]) == set(g["words"])
    assert g["median"](g["whole"]) == sorted(g["counts"][w] for w in g["whole"])[len(g["whole"]) // 2]


def check_02(g, out):
    assert abs(g["loss"].item() - math.log(g["tok"].vocab_size)) < 0.15  # ≈ ln |V| at initialisation
    assert torch.allclose(g["fast"], g["slow"], atol=1e-5) and g["cached"] == g["full"]
    assert torch.allclose(g["seq"], g["token_logps"].sum(1))
    assert torch.allclose(g["by_hand"], g["out"].logps, atol=1e-6)  # the shifted mask by hand = the library
    assert g["mask"][0].sum() < g["mask"][1].sum() and "by hand" in out  # two lengths: the first row is padded
    c = g["c"]  # the scale of attention is the head's dimension, printed beside the heads
    assert c.n_embd % c.n_head == 0 and f"{c.n_head} attention heads of {c.n_embd // c.n_head} dimensions" in out
    assert g["t_cache"] > 0 and g["t_full"] > 0 and g["t_math"] > 0 and g["t_sdpa"] > 0


def check_03(g, out):
    assert abs(g["first_loss"] - math.log(g["run"].tok.vocab_size)) < 0.15
    assert abs(g["by_hand"].item() - g["first_loss"]) < 1e-5  # cross_entropy = the mean over the batch's response tokens
    prompt_len = len(g["run"].tok.encode_prompt(g["examples"][0][0]))
    assert (g["targets"][0, :prompt_len - 1] == -100).all() and (g["targets"][0, prompt_len - 1] != -100)
    assert g["metrics"]["val_loss"] < g["metrics"]["val_loss_init"] - 1
    assert "SFT samples (" in out and g["n_sft"] == len(g["ev"]["gold"])
    assert g["prompt_tokens"] > 0 and g["response_tokens"] == int(g["mask"][:, 1:].sum())
    assert g["se_sft"] == pytest.approx(g["ev"]["gold_std"] / g["n_sft"] ** 0.5)  # ± is a std; the SE beside it
    assert g["best_gold"] > 4 and len(g["train_titles"]) + len(g["heldout_titles"]) == 400
    assert f"titles: {len(g['train_titles'])} for training" in out


def check_04(g, out):
    assert abs(g["expected"] - g["report"]["train"]["oracle_accuracy"]) < 0.05  # BT's prediction holds
    assert 0.5 < g["guess"] < 1
    acc = g["report"]["train"]["oracle_accuracy"]
    assert 0.6 < acc < 0.95 and g["wrong"] / len(g["pairs"]) == pytest.approx(1 - acc - g["ties"] / len(g["pairs"]) / 2, abs=1e-9)
    n = len(g["pairs"])  # the oracle is strictly right + ½ of the ties, printed as such
    assert g["right"] + g["wrong"] + g["ties"] == n and acc == pytest.approx((g["right"] + g["ties"] / 2) / n)
    assert 0 < g["se"] < 0.05 and "on the held-out pairs" in out


def check_05(g, out):
    assert abs(g["first_loss"] - LN2) < 1e-6 and g["after"] < g["first_loss"]
    assert g["m"]["val_accuracy"] > 0.5
    assert abs(g["shifted"] - g["bt_after"]) < 1e-6  # + 5 to every reward: the same Bradley–Terry loss ...
    assert g["shifted_centring"] > 100 * g["centring_after"]  # ... only the centring term notices
    assert g["after"] == pytest.approx(g["bt_after"] + g["centring_after"])
    # RL reads the scale, not the level: a shift leaves the advantages, the std rescales them
    assert g["shift_change"] < 1e-5 and g["scale_ratio"] == pytest.approx(1 / g["norm"]["raw_std"], rel=1e-4)


def check_06(g, out):
    assert g["kl_k1"].abs().max() < 1e-5                             # step 1: the policy is the reference
    assert torch.allclose(g["advantages"].sum(1), torch.zeros(2), atol=1e-5)  # leave-one-out: sums to 0
    assert torch.allclose(g["returns"].flatten(), g["batch"].reward, atol=1e-5)
    assert g["m"]["history"][-1]["step"] == g["m"]["steps"]
    assert g["m"]["config"]["beta"] == g["knobs"].beta == g["cfg"].beta  # the knob reaches the stage
    assert f"β = {g['knobs'].beta}: last " in out and g["kl_end"] > 0
    # GRPO's advantage by hand = the library's; leave-one-out = K/(K−1)·(R − mean); an equal group gives 0
    assert torch.allclose(g["grpo_by_hand"], g["grpo"], atol=1e-6) and (g["equal_group"] == 0).all()
    assert torch.allclose(g["advantages"], g["K"] / (g["K"] - 1) * (g["returns"] - g["group_mean"]), atol=1e-5)
    # proxy and gold risen in SFT standard deviations, from 512 fresh SFT samples
    assert len(g["base_prompts"]) == 512 and all(math.isfinite(g[k]) for k in ("proxy_rise", "gold_rise"))
    assert g["proxy_rise"] == pytest.approx((g["mean"]("proxy_reward") - g["base"]["proxy_reward"].mean().item())
                                            / g["base"]["proxy_reward"].std().item())


def check_08(g, out):
    assert f"loss = -log σ(0.5·2) = {-math.log(1 / (1 + math.exp(-1.0))):.4f}" in out  # the four numbers
    assert torch.allclose(g["losses"], torch.full_like(g["losses"], LN2))  # the batch before training: ln 2
    # rung 4 at step 0: every pair a tie, so TRL's strict accuracy is 0 and the ties-½ one is chance
    n = len(g["val_enc"])
    assert g["val_metrics"]["eval/rewards/accuracies"] == 0.0 == g["strict"] and g["ties"] == n
    assert "a tie counted ½ (reward model, oracle): 0.500" in out
    assert "squared-margin" in g["LOSSES"] and math.isfinite(g["ev"]["gold_reward"])
    assert g["heldout_h"] == pytest.approx(g["m"]["final"]["eval/rewards/margins"] / g["knobs"].beta)
    # rung 2 written out: the library's loss, per pair, finite at β·h = −1000; the rewards detached
    assert torch.allclose(g["mine"][0], g["library"][0]) and g["mine"][0].shape == (2,)
    assert g["mine"][0][1].item() == pytest.approx(1000.0) and not math.isfinite(g["naive"].item())
    assert not g["mine"][1].requires_grad and not g["library"][1].requires_grad
    assert torch.allclose(g["dz"], -torch.sigmoid(-g["zs"].detach()), atol=1e-7)  # d/dz[−log σ(z)] = −σ(−z)
    # the answer, on the training pairs: weights in (0, 1), split by whether the gold reward agrees with the label
    w, bad = g["train_weights"], g["mislabelled"]
    assert len(w) == len(g["pairs"]) and 0 < int(bad.sum()) < len(w) and ((w > 0) & (w < 1)).all()
    assert w[bad].mean() > w[g["agreed"]].mean()  # pushed hardest
    # conservative DPO: weight σ(−βh) − ε; 0 at βh = log((1−ε)/ε); a mislabelled pair still pulls with ≈ 1 − ε
    eps, w = g["eps"], g["cdpo_weight"]
    assert g["stop_margin"] == pytest.approx(math.log((1 - eps) / eps)) and abs(w[2].item()) < 1e-6
    assert torch.allclose(w, torch.sigmoid(-g["z"].detach()) - eps, atol=1e-6) and w[0] > 1 - eps - 0.02 and w[3] < 0
    assert f"{g['stop_margin']:.3f}" in out


def check_07(g, out):
    # the derivation in float64: π* written out = the library's; J(π*) = β·log Z is the max
    assert g["open_vs_lab"] < 1e-12
    assert abs(g["J_star"] - g["beta_logZ"]) < 1e-12 and all(v < g["J_star"] for k, v in g["J"].items() if k != "π*")
    assert g["eq5_error"] < 1e-12 and g["z_cancel"] < 1e-12 and g["loss_gap"] < 1e-12  # eq. 5; Z cancels; eq. 7 = eq. 2
    tvs = [d for _, d in g["trace"]]  # descent on the DPO loss: TV to π* falls at every shown step, to ~0
    assert tvs == sorted(tvs, reverse=True) and tvs[0] > 0.1 and g["tv_final"] < 1e-10
    assert g["loss_end"] == pytest.approx(g["loss_floor"], abs=1e-12)  # its floor: the BT loss of r
    # π* in log space: one log Z per prompt, rows sum to 1; exp overflows at β = 0.001, logsumexp does not
    assert g["log_z"].shape == (2,) and torch.allclose(g["log_star"].exp().sum(-1), torch.ones(2, dtype=torch.float64))
    assert not math.isfinite(g["naive"].item()) and math.isfinite(g["safe"].item()) and g["identity"] < 1e-12
    # up to what: an unlinked response's logit is free; the linked four still match π*
    assert g["ratio_error"] < 1e-8 and abs(g["last_logit_grad"]) < 1e-15 and g["free_loss_spread"] < 1e-12
    assert _largest_tv(g["free"]) > 0.2
    # the answer: β → 0 is greedy, β → ∞ is π_ref
    assert g["tv_small_beta_greedy"] < 1e-3 and g["tv_large_beta_ref"] < 1e-3


def check_09(g, out):
    assert abs(g["first_loss"] - LN2) < 1e-6                   # π = π_ref: ln 2 ...
    assert torch.allclose(g["weights"], torch.full_like(g["weights"], 0.5))  # ... every weight ½ ...
    assert g["grad_norm"] > 0 and g["after"].item() < g["first_loss"]      # ... and still a gradient
    # β and one step: at h = 0 the gradient is β × one direction; SGD's step follows it, AdamW's not
    steps, betas = g["steps"], g["BETAS"]
    ratio = betas[-1] / betas[0]
    assert steps[(betas[-1], "SGD")]["grad_norm"] / steps[(betas[0], "SGD")]["grad_norm"] == pytest.approx(ratio, rel=1e-3)
    assert g["sgd_ratio"] == pytest.approx(ratio, rel=1e-3) and abs(g["adam_ratio"] - 1) < 0.05
    moved = [steps[(b, "AdamW")]["margin_moved"] for b in betas]
    assert min(moved) > 0 and max(moved) / min(moved) < 1.05   # the same step in h, whatever β
    # the saturation: past h = 3/β a pair's weight is below σ(−3); large β gets there, small β does not
    big, small = g["traces"][betas[-1]], g["traces"][betas[0]]
    past = [w for h, w in zip(big["margins"], big["weights"]) if h > 3 / betas[-1]]
    assert past and max(past) < 1 / (1 + math.exp(3))
    assert big["mean_weight"][-1] < 0.25 < 0.4 < small["mean_weight"][-1]
    assert big["mean_weight"][0] == pytest.approx(0.5, abs=1e-6) == small["mean_weight"][0]
    # the sweep: a larger β stays nearer the reference; the default run is one of its points
    assert g["kls"][0] > g["kls"][-1] and len(g["kls"]) >= 3
    assert g["m"]["config"]["beta"] in g["sweep_rows"] and g["m"]["history"][-1]["loss"] < LN2
    # the trace's new columns: one per step; the effective number of pulling pairs is 32 at h = 0
    for t in g["traces"].values():
        assert len(t["grad_norms"]) == len(t["updates"]) == g["SATURATION_STEPS"] == len(t["n_pulling"]) - 1
        assert t["n_pulling"][0] == pytest.approx(len(g["batch"])) and all(x > 0 for x in t["updates"])
    assert g["hs"] == [g["sweep_rows"][b]["margin"] / b for b in g["sweep_betas"]]  # h = β·h / β


def check_10(g, out):
    # the question: the held-out log-prob changes are the history's last eval entry minus its first
    evals = [r for r in g["m"]["history"] if "eval/loss" in r]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == g["m"]["steps"]
    assert g["chosen_change"] == evals[-1]["eval/logps/chosen"] - evals[0]["eval/logps/chosen"]
    assert g["rejected_change"] == evals[-1]["eval/logps/rejected"] - evals[0]["eval/logps/rejected"]
    assert ("went up" if g["chosen_change"] > 0 else "went DOWN") in out
    # three classifiers on the held-out pairs, ties ½ for all; the strict count is the run's own metric
    acc = g["accuracy"]
    assert len(acc) == 3 and all(0 <= a <= 1 for a in acc.values())
    assert acc["oracle (gold reward)"] == pytest.approx(read_json(g["run"].path("reward_model_metrics.json"))["oracle_accuracy"])
    n = len(g["val_enc"])
    assert g["wins"].float().mean().item() == pytest.approx(g["end"]["eval/rewards/accuracies"], abs=1.5 / n)
    assert all(-1 <= c <= 1 for pair in g["corr"].values() for c in pair)
    # the figure read: the plateau is an eval step of the run; the reward model scored every held-out pair
    assert g["plateau"] in evals and g["rm_scores"].shape == (n, 2)
    assert g["verdict"](g["rm_scores"]).mean().item() == pytest.approx(
        read_json(g["run"].path("reward_model_metrics.json"))["val_accuracy"], abs=1e-6)
    assert int(g["at_word"].sum()) == len(g["word_scores"]) > 0 and -1 <= g["word_corr"] <= 1
    assert g["train_change"].shape == (2,) and "on the " in out and "training pairs" in out


def check_11(g, out):
    assert g["lab_open_vs_saved"] < 1e-12  # eq. 4 written out = the lab's π*(r)
    res = g["res"]  # the lab: DPO = exact RL = π*(r̂); REINFORCE looser; all away from π*(true r)
    assert res["tv_dpo_vs_optimal_fitted"] < 1e-6 and res["tv_rlhf_vs_optimal_fitted"] < 1e-6
    assert res["tv_dpo_vs_optimal_fitted"] < res["tv_reinforce_vs_optimal_fitted"] < 1e-2 < res["tv_dpo_vs_optimal_true"]
    assert res["gradient_max_rel_error"] < 1e-10
    assert f"REINFORCE {res['tv_reinforce_vs_optimal_fitted']:.1e}" in out  # the text's number is the run's
    assert g["slope"] < 0  # the answer: the distance falls with n
    assert g["spread"](g["star_fitted"]) < 1e-12 < g["spread"](g["ref_lab"])  # eq. 5: REINFORCE's advantages are 0 at π*
    for name, r in res["ipo_contrast"].items():  # IPO's target is 1/(2β), printed, and where IPO's gap settles
        assert r["target_gap_ipo"] == pytest.approx(1 / (2 * r["beta"]))
        assert f"IPO target 1/(2β) = {r['target_gap_ipo']:.2f}" in out
        if name.startswith("ipo"):
            assert r["trace"][-1]["gap"] == pytest.approx(r["target_gap_ipo"], rel=1e-3)
        else:
            gaps = [s["gap"] for s in r["trace"]]  # DPO's gap runs past IPO's target and still grows
            assert gaps[-1] > r["target_gap_ipo"] and gaps[-1] > gaps[-2]


def _largest_tv(free):
    """Largest TV between the policies that share the loss (one prompt)."""
    ps = [logp.exp() for _, logp in free.values()]
    return max(0.5 * (p - q).abs().sum().item() for p in ps for q in ps)


def check_12(g, out):
    """The bridge: rungs 0-2 computed live; without a saved or shipped study, no reading of rungs 3-5."""
    assert g["m0"]["tv_dpo_rlhf"] <= 1e-8 and g["grad_unlinked"] < 1e-15 < g["grad_linked"]
    e1 = g["e1"]
    assert abs(e1["dpo_loss"] - e1["dpo_loss_other_start"]) < 1e-12 and e1["tv_dpo_other_start"] > 0.005
    assert f"TV between the two DPO solutions {e1['tv_dpo_other_start']:.4f}" in out  # the text's number is the run's
    for text in ("rung 0: DPO, RLHF and π*(r_φ) are one policy", "DPO's gradient on the logit",
                 "rung 1: two DPO solutions", "rung 1: from the reference"):
        assert [line for line in out.splitlines() if line[2:].startswith(text)][0].startswith("✓"), text
    if g["result"] is None:  # no study: it says so, and no reading of rungs 3-5 is printed, let alone claimed
        assert "rungs 3–5 below are left out" in out and "rung 3:" not in out and "rung 5:" not in out
    else:
        assert [r["rung"] for r in g["result"]["rungs"]] == [0, 1, 2, 3, 4, 5]


def check_13(g, out):
    from minidpo.harness import compare as C
    hand, sft = g["hand"], g["sft"]  # the hull by hand: from SFT at KL 0, concave, climbing, then flat
    assert hand[0] == (0.0, sft["gold_reward"], sft["fluency"]) and len(hand) >= 2
    assert all(b[0] > a[0] and b[1] >= a[1] for a, b in zip(hand, hand[1:]))
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(hand, hand[1:])]
    assert all(s >= t - 1e-12 for s, t in zip(slopes, slopes[1:]))  # concave: the slopes never rise
    for k, gold, _ in g["dpo_points"]:  # every point lies on or under it ...
        assert C.at_kl(hand, k)[0] >= gold - 1e-12
        assert C.at_kl(hand, k)[0] >= C.at_kl(g["running"], k)[0] - 1e-12  # ... and so does the running maximum
    assert g["env"] == hand and (g["gold_at_kl"] is None) == (g["library_gold"] is None)  # = the library's
    if g["gold_at_kl"] is not None:
        assert g["library_gold"] == pytest.approx(g["gold_at_kl"], abs=1e-12)
    assert f"{len(g['points'])} evaluated points" in out and set(g["per_unit"]) == {"dpo", "reinforce"}
    assert "Shown: the full study saved in" in out  # the test folder holds the --fast study and ablation
    assert set(g["result"]["matched"]) == {"bt", "deterministic"} and set(g["result"]["pipeline"]) == {"rlhf", "ppo", "dpo"}
    assert [r["rl_method"] for r in g["ablation"]["rows"]] == ["reinforce"] * 4  # budget, labels, data
    # every comparison of two methods says its seeds: an interval names them, one seed says so
    lines = [line for line in out.splitlines() if " − " in line and ("interval" in line or "one seed" in line)
             and not line.rstrip().endswith(":")]  # a table's header names what follows, compares nothing
    assert lines and all(re.search(r"\d+ seeds|one seed", line) for line in lines)
    assert all("fewer than 3" in line for line in lines if re.search(r"\b2 seeds", line))


def _claims_hold(out: str, *starts: str) -> None:
    """Each claim of the output that starts with one of `starts` is printed and holds (✓)."""
    for text in starts:
        lines = [line for line in out.splitlines() if line[2:].startswith(text)]
        assert lines and all(line.startswith("✓ ") for line in lines), (text, lines)


def check_14(g, out):
    n = g["n"]
    assert g["picked_proxy"] == g["proxy"][:n].max().item()  # best-of-n picks by the proxy alone
    assert g["bound"] == pytest.approx(math.log(n) - (n - 1) / n)
    assert g["kl_by_hand"] == pytest.approx(g["kl_library"], abs=1e-9) and 0 < g["kl_by_hand"] <= g["bound"] + 1e-9
    rows = g["curves"]["full"]
    assert [r["n"] for r in rows] == [2 ** i for i in range(len(rows))] and rows[-1]["proxy"] > rows[0]["proxy"]
    assert all(-1e-9 <= r["kl_pool"] <= r["kl_bound"] + 1e-9 for r in rows) and rows[0]["pick_best_gold"] == 1.0
    assert set(g["rl"]) == {"β=0, full RM", "β=0.01, full RM"}
    # the fast folder holds no full study: the committed one is read, three seeds, and its claims hold
    full = g["full"]
    assert len(full["seeds"]) >= 3 and "committed with minidpo" in out
    assert all(not s["best_of_n_summary"]["full"]["peaked"] for s in full["per_seed"])  # best-of-n never peaks
    assert len(full["penalty"]["a_gold"]) == len(full["seeds"]) and "(95 % interval" in out
    _claims_hold(out, "best-of-n's gold at n = ", "gold reward at the same KL: no measurable difference between β = 0.01",
                 "best-of-n with the full proxy has no observed peak")


def check_15(g, out):
    for h in g["hand"].values():  # at temperature 1 the hand-made measures are the library's
        assert h["entropy"] == pytest.approx(h["library_entropy"], abs=1e-4) and h["unique"] == h["library_unique"]
    assert {p["method"] for p in g["points"]} == {"dpo", "rlhf"} and len(g["points"]) == sum(map(len, g["betas"].values()))
    assert all(g["dpo_row"][k] == g["rows"]["dpo"][k] for k in g["dpo_row"])  # the row from its parts
    assert g["rows"]["rlhf (REINFORCE)"]["models"] == ["policy", "reference", "reward model"]
    div, mt = g["div"], g["mt"]  # the committed full sweep: three seeds, read at the same KL
    assert len(div["seeds"]) >= 3 and all(len(mt[k]["dpo"]) == len(div["seeds"]) for k in ("entropy", "unique_frac"))
    assert g["entropy_at_kl"].n == len(div["seeds"]) and g["entropy_at_kl"].verdict in out
    assert g["cost_rows"]["ppo"]["models"][-1] == "value model" and "committed with minidpo" in out
    _claims_hold(out, "gold reward at the end: no measurable difference between β = 0 RL and the SFT model",
                 "DPO's unique fraction")


def check_16(g, out):
    d = g["rows"]["DPO (default)"]  # by hand on the held-out pairs = the training log's eval/logps
    assert g["mean_w"] == pytest.approx(d["logps_chosen_change"], abs=1e-3)
    assert g["mean_l"] == pytest.approx(d["logps_rejected_change"], abs=1e-3)
    assert g["mean_w"] - g["mean_l"] > 0 and set(g["rows"]) == set(g["names"])  # the margin grew
    assert g["change"].shape == (len(g["val_pairs"]), 2)
    full = g["full"]  # the committed study: every remedy against DPO at the same KL, paired over 3 seeds
    assert len(full["seeds"]) >= 3 and set(g["verdicts"]) == set(g["names"]) - {"DPO (default)"}
    for name, m in full["matched"].items():  # read where both frontiers end first, seed by seed
        for kl, a, b in zip(m["kl"], full["points"][name], full["points"]["DPO (default)"]):
            assert kl == pytest.approx(min(max(p["kl_to_ref"] for p in a), max(p["kl_to_ref"] for p in b)))
    assert all(v[0].n == len(full["seeds"]) for v in g["verdicts"].values())
    _claims_hold(out, "plain DPO's held-out log π(y_w) from start to end", "gold reward at the same KL: RPO is above DPO")


def check_17(g, out):
    assert g["same_pairs"] and g["max_diff"] == 0.0  # the round written out is the library's online_round
    assert abs(g["first"]["eval/loss"] - LN2) < 1e-6  # it starts at the reference: ln 2
    assert len(g["pairs"]) + g["refused"] == g["knobs"].prompts
    assert [r["round"] for r in g["online"]] == [1, 2] and g["online"][-1]["labelled_pairs"] > g["online"][0]["labelled_pairs"]
    res = g["res"]  # the committed study: both label sources and offline DPO on three seeds, at the same KL
    assert set(res["online"]) == {"gold", "reward model"} and len(res["seeds"]) >= 3
    assert all(d.n == len(res["seeds"]) for d in g["at_kl"].values()) and "committed with minidpo" in out
    _claims_hold(out, "gold reward at the same KL: ", "how often a round's labels agree")


def _reading_falls(d, v, out):
    """Lesson 13's Try: each hull read at a smaller KL gives less gold (where both readings exist)."""
    both = [(d["read"][m][0], v["read"][m][0]) for m in d["read"] if d["read"][m] and v["read"][m]]
    return both and all(b < a for a, b in both)


def check_18(g, out):
    rewards, batch, cfg = g["rewards"], g["batch"], g["cfg"]
    k1 = ((g["old"].token_logps - batch.ref_token_logps) * g["mask"]).sum(1)
    assert torch.allclose(rewards.sum(1), batch.reward - cfg.beta * k1, atol=1e-5)
    white = g["white"][batch.mask]
    assert abs(white.mean().item()) < 1e-5 and abs(white.std().item() - 1) < 1e-3
    assert g["clip_frac"].item() == 0.0  # ratio 1 on the first minibatch: nothing to clip
    assert g["pg_loss"].item() == pytest.approx(-(g["white"] * g["mask"]).sum().item() / g["mask"].sum().item(), abs=1e-6)
    assert {"clip_frac", "approx_kl", "value_ev"} <= set(g["ppo"]["history"][-1])
    # λ = 0.95 lies between the two extremes the Try names: neither distance is 0
    assert g["from_to_go"] > 1e-3 and g["from_own"] > 1e-3 and not g["knobs"].lam in (0.0, 1.0)
    first = g["batch"].mask[0].nonzero()[0, 0]  # row 0's first response token: its reward-to-go is the row's sum
    assert g["to_go"][0, first].item() == pytest.approx(g["rewards"][0].sum().item(), abs=1e-5)
    # the clip fraction is the share of tokens whose gradient the clip cut, not of ratios outside 1 ± ε
    assert g["clip_by_hand"] == pytest.approx(g["clip_library"].item(), abs=1e-6)
    assert g["clip_by_hand"] <= g["outside_frac"] and g["outside_frac"] > 0
    assert g["ppo"]["samples_generated"] == g["reinforce"]["samples_generated"]  # the same budget
    # each run's frontier starts at the SFT point, never falls, and ends at the furthest KL it reached
    sft = g["sft_eval"]["gold_reward"]
    for name, hull in g["hulls"].items():
        assert hull[0][:2] == (0.0, sft) and all(b[1] >= a[1] for a, b in zip(hull, hull[1:]))
        reached = max(p["kl_to_ref"] for p in g["F"].points_of(g["points"], g["names"][name], "bt", 0))
        assert g["reach"][name] == pytest.approx(reached)
    # the 3-seed study (the committed one: the test folder has none) is read at the same KL, paired by seed
    study = g["study"]
    assert study is not None and "Shown: the full study committed with minidpo" in out and len(study["seeds"]) >= 3
    for kl, d in g["read"].items():  # each claimed reading is the paired difference of the two frontiers
        gaps = study["paired"][str(kl)]["gaps"]
        assert d.diffs == pytest.approx(gaps) and d.n == len(study["seeds"])
    assert g["read"] and "PPO is above REINFORCE" in out and "this lesson took" in out


def check_19(g, out):
    assert set(g["rows"]) == {"sigmoid", "smooth-hinge", "mean-margin"}
    assert not g["LOSSES"]["mean-margin"].reference and all(math.isfinite(r["gold_reward"]) for r in g["rows"].values())
    # what trains is the knob's target (the registration's one default, and the unit's loss_args)
    target = g["knobs"].target
    assert g["LOSSES"]["smooth-hinge"].resolve({}) == {"target": target} and f"loss args {{'target': {target}}}" in out
    assert all(math.isfinite(v) for v in g["margins_at_end"].values())
    # the gradient weights, by autograd: DPO σ(−βh), the hinge's step at βh = 1, the smoothed hinge σ(t − βh) above DPO
    w, z = g["weights"], g["margins"].detach()
    assert torch.allclose(w["DPO"], torch.sigmoid(-z), atol=1e-6) and torch.allclose(w["smooth-hinge"], torch.sigmoid(target - z), atol=1e-6)
    assert torch.equal(w["hinge"], (z < 1).float()) and bool((w["smooth-hinge"] > w["DPO"]).all())
    # the new losses are read against DPO at KLs both reach, on one seed: no verdict
    for name, row in g["versus"].items():
        assert row and all(d.n == 1 and d.verdict == "one seed" for d in row.values())
        assert max(row) <= min(max(v[0] for v in h) for h in g["hulls"][name] + g["hulls"]["sigmoid"]) + 1e-9
    # the leaderboard: the committed full bench, DPO − each loss paired by seed
    bench = g["bench"]
    assert bench is not None and "Shown: the full study committed with minidpo" in out and len(bench["seeds"]) >= 3
    assert set(g["told"]) <= set(bench["paired"]) and all(v in ("above", "below") for v in g["told"].values())


def check_20(g, out):
    assert all(c.ok for c in g["clean"])
    # the healthy run: ln 2 and accuracy 0 (ties) at step 0, every curve check passes
    first = g["held_out"][0]
    assert first["step"] == 0 and abs(first["eval/loss"] - LN2) < 1e-5 and first["eval/rewards/accuracies"] == 0
    assert all(c.ok for c in g["read_curves"](g["healthy"]))
    # the bug by hand: against the policy itself the loss is ln 2 and the margin 0 after the steps
    assert abs(g["shared_loss"].item() - LN2) < 1e-6 and abs(g["m_shared"]["rewards/margins"]) < 1e-6
    assert g["clean_loss"].item() < LN2 - 1e-3 and g["moved"].abs().max() > 1e-3
    rows = g["rows"]  # the default: three faults on this run's seed
    assert set(rows) == {"clean", *g["LESSON_FAULTS"]} and "--set museum=true" in out
    assert rows["clean"]["history"] == g["dpo"]["history"]  # the clean run is the pipeline's dpo stage
    assert abs(rows["shared-reference"]["last"]["loss"] - LN2) < 1e-5  # stuck at ln 2 ...
    assert "reference-frozen" in rows["shared-reference"]["failed_checks"]  # ... and the doctor says why
    assert rows["clean"]["failed_checks"] == [] and rows["clean"]["gold_cost"] == 0
    assert g["stuck"] == ["shared-reference"] and not all(c.ok for c in g["verdicts"]["shared-reference"])
    # the costs come from the full museum (the committed one here), clean − fault paired by seed
    museum = g["museum"]
    assert museum is not None and "Shown: the full study committed with minidpo" in out and len(museum["seeds"]) >= 3
    for name, d in museum["costs"].items():
        clean = [x["gold_reward"] for x in museum["by_seed"]["clean"]]
        assert d["gaps"] == pytest.approx([c - x["gold_reward"] for c, x in zip(clean, museum["by_seed"][name])])
    # only swapped labels hide from every check a real run can run; they cost the most among healthy-looking runs
    assert g["only_gold"] == ["swap-labels"] and g["worst"] == "swap-labels"


def check_21(g, out):
    assert abs(g["e"]["ref_total_probability"] - 1) < 1e-6 and 0 <= g["pairs"]["chosen_down_frac"] <= 1
    assert len(g["pairs"]["ches"]) == len(g["pairs"]["d_logp_chosen"]) == len(g["pairs"]["ches_normalised"]) > 0
    assert g["gap"] < 1e-3  # the displacement and both CHES by hand are the library's
    # the three pairs shown by hand: the most alike (equal length), the longest y_l beyond y_w, and the reverse
    picked, gaps = g["picked"], g["length_gap"]
    assert gaps[picked["y_l much longer"]] == max(gaps) > 0 > min(gaps) == gaps[picked["y_w much longer"]]
    assert gaps[picked["most alike"]] == 0 and g["apart"][picked["most alike"]] == min(g["apart"])
    # the text follows the numbers: the RL optimum's unlabelled share against the reference's, as printed
    o = g["o"]
    assert f"RL optimum {o['rl_optimum']:.4f} ({'falls' if o['rl_optimum'] < o['reference'] else 'rises'})" in out
    assert g["closest"] == min(g["distance"], key=g["distance"].get) and f"closest: {g['closest']}" in out
    assert g["share"] == pytest.approx(o["rl_optimum"], rel=1e-6)  # π_ref(U)/Z by hand = the study's RL optimum
    # every correlation is printed with its interval, and its verdict follows the interval
    for key in ("ches", "ches_normalised"):
        c = g["pairs"][f"corr_{key}_d_chosen"]
        assert c["low"] <= c["r"] <= c["high"] and f"{c['low']:+.3f} … {c['high']:+.3f}: {c['verdict']}" in out
        assert (c["verdict"] == "no measurable correlation") == (c["low"] <= 0 <= c["high"])
    # IPO's margin at the end is its target 1/(2β); DPO's is not bounded
    for v in g["ipo_end"].values():
        assert v["h"] == pytest.approx(1 / (2 * v["beta"]), abs=0.01)
    assert all(v["h"] > 1 / (2 * v["beta"]) for v in g["dpo_end"].values())


def check_22(g, out):
    n_lines, n_same = len(g["lines"]), sum(g["same"])
    assert g["library"] == g["ours"] and 0 < n_same < n_lines  # both kinds of line are in the shipped file
    for i, (trl, ours) in enumerate(zip(g["trl"], g["ours"])):  # TRL's prompt runs into the replies, or is ours
        assert trl == ours or (trl[0].startswith(ours[0]) and len(trl[0]) > len(ours[0]) and ours[1].endswith(trl[1]))
        assert trl[0] + trl[1] == g["lines"][i]["chosen"] and trl[0] + trl[2] == g["lines"][i]["rejected"]
        if g["inside_word"][i]:  # cut inside a word: the first differing words begin alike
            assert trl[0][-1].isalpha() and trl[1][0].isalpha() and trl[1][0] != trl[2][:1]
        if g["contained"][i]:  # the chosen reply starts the rejected one: TRL keeps its last character
            assert len(trl[1]) == 1 and trl[2].startswith(trl[1]) and len(trl[2]) > 1
    assert sum(g["inside_word"]) > 0 and sum(g["contained"]) > 0 and sum(g["after_words"]) > 0
    assert sum(g["inside_word"]) + sum(g["contained"]) + sum(g["after_words"]) == g["n_differ"] == n_lines - n_same
    assert "the library renders the same: True" in out and "roles read back from the tokens: True" in out
    assert not g["answered"] & g["file_replies"] and len(g["answered"]) > 3000  # the base read no reply
    assert g["masked"] and g["sft_metrics"]["val_loss"] < g["sft_metrics"]["val_loss_init"]  # import, SFT ...
    assert g["run"].path("base.pt").is_file() and g["sft_metrics"]["train_data"]["read"] == 160  # (--max-pairs)
    assert abs(g["first"]["eval/loss"] - LN2) < 1e-6 and g["last"]["eval/loss"] < LN2  # ... DPO from ln 2 ...
    assert g["m"]["train_data"]["sampled"] == "64 of 400 (seed 0)"
    # ... judged without gold, like for like: the margin by hand is the run's, and so is the accuracy of
    # DPO's implicit reward against its reference (ties wrong); every row's SE is binomial
    assert g["margin"] == pytest.approx(g["last"]["eval/rewards/margins"], abs=1e-4)
    assert g["acc"][g["dpo_key"]] == pytest.approx(g["last"]["eval/rewards/accuracies"], abs=1e-6)
    assert len(g["acc"]) == 8 and g["n_val"] == 200
    for name, p in g["acc"].items():
        assert f"{name:47s} {p:.3f} ± {math.sqrt(p * (1 - p) / 200):.3f}" in out
    assert g["only_dpo"] - g["only_sft"] == round(200 * g["gain"].mean)  # the difference, in pairs
    assert g["only_dpo_vs_base"] - g["only_base"] == round(200 * g["behind"].mean)
    assert set(g["kl"]) == {"SFT vs base", "DPO vs SFT"} and all(se > 0 for _, se in g["kl"].values())
    assert set(g["checks"]) == {"SFT", "DPO"} and all(0 <= c["repeated 3-gram"] <= 1 for c in g["checks"].values())
    assert g["checks"]["DPO"]["asked about a film"] == sum(g["film_named"](g["chat"].parse_prompt(p)[-1]["content"])
                                                          is not None for p in g["prompts_all"]) > 0
    assert g["bit_for_bit"] and "chat template carried: True" in out  # export, re-import bit for bit
    assert "rendered by jinja2 = chat.render_prompt: True" in out
    assert "apply_chat_template gives our prompt True" in out or "transformers is not installed here" in out
    step, ref = g["cost"]["step"], g["cost"]["reference"]
    assert step["n"] == ref["n"] == 5 and step["min"] <= step["median"] <= step["max"]  # a spread over 5 runs
    assert g["cost"]["real_tokens"] < g["cost"]["padded_tokens"] == 2 * 64  # rows of two lengths, padded
    assert abs(g["cost"]["first_loss"] - LN2) < 1e-3 and "this lesson took" in out
    assert "arithmetic, not measured" in out and "days" in out


def run_cells(script: Path, g: dict) -> list:
    """Run the lesson as a Jupyter kernel runs its notebook: cell by cell (`# %%`) in one namespace,
    each cell's last bare expression evaluated on its own, as the kernel does to display it.
    Returns those values: a Figure among them is what a notebook would print as `<Figure ...>`."""
    import ast
    text, shown, line = script.read_text(encoding="utf-8"), [], 0
    for cell in re.split(r"^(?=# %%)", text, flags=re.M):
        tree = ast.parse(cell, filename=str(script))
        ast.increment_lineno(tree, line)  # tracebacks name the script's own lines
        line += cell.count("\n")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, str(script), "exec"), g)
        if last is not None:
            shown.append(eval(compile(ast.Expression(last.value), str(script), "eval"), g))
    return shown


def run_lesson(script: Path, folder: Path, *sets: str) -> tuple[dict, str]:
    """The lesson run as `python SCRIPT --fast --out FOLDER [--set NAME=VALUE ...]`, in this process,
    cell by cell as a notebook runs it: its globals and what it printed. No cell may end in a figure
    (a notebook would print it as text: lessons hand figures to `show`)."""
    import contextlib
    import io
    from matplotlib.figure import Figure
    argv = [str(script), "--fast", "--out", str(folder)] + [a for s in sets for a in ("--set", s)]
    buf, saved = io.StringIO(), sys.argv
    sys.argv = argv
    g = {"__name__": "__main__", "__file__": str(script)}
    try:
        with contextlib.redirect_stdout(buf):
            shown = run_cells(script, g)
    finally:
        sys.argv = saved
    assert not any(isinstance(v, Figure) for v in shown), f"{script.name}: a cell ends in a Figure, not show(fig)"
    return g, buf.getvalue()


@pytest.fixture(scope="module")
def lesson(folder):
    """lesson("08") -> (globals, output) of its default --fast run, computed once per module."""
    done = {}

    def get(number: str):
        if number not in done:
            script = next(s for s in TUTORIALS if s.name.startswith(number))
            done[number] = run_lesson(script, folder)
        return done[number]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs_fast_and_shows_its_numbers(script, lesson):
    g, out = lesson(script.name[:2])
    globals()[f"check_{script.name[:2]}"](g, out)


# --- every *Try* of a lesson: (lesson, the --set it names, a check of variant against default) -------
# Each check says how the number the Try's text names must move; `d` is the default run's globals,
# `v` the variant's, `out` the variant's printed output.
TRIES = [
    # 12: a noisier second start: rung 1's two DPO solutions further apart, at the same loss
    ("12", ("start_noise=3.0",), lambda d, v, out: v["e1"]["tv_dpo_other_start"] > d["e1"]["tv_dpo_other_start"]
     and abs(v["e1"]["dpo_loss"] - v["e1"]["dpo_loss_other_start"]) < 1e-12),
    ("13", ("matched_kl=0.5",), _reading_falls),
    ("14", ("n=64",), lambda d, v, out: v["picked_proxy"] >= d["picked_proxy"] and v["bound"] > d["bound"]),
    ("15", ("temperature=0.5",), lambda d, v, out: all(v["hand"][k]["entropy"] < d["hand"][k]["entropy"] for k in d["hand"])),
    ("17", ("labels=deterministic",), lambda d, v, out: v["agree"] > d["agree"] and v["agree"] == pytest.approx(
        sum(p["chosen_gold"] != p["rejected_gold"] for p in v["pairs"]) / len(v["pairs"]))),
    ("01", ("merges=64",), lambda d, v, out: v["tokens_per_review"] > d["tokens_per_review"] + 1),
    # 07: a smaller β trusts the reward more: π* sharper (top probability, KL to π_ref), descent still on it
    ("07", ("beta=0.1",), lambda d, v, out: v["pi_star"].max() > d["pi_star"].max() and v["kl_star"] > d["kl_star"]
     and v["tv_final"] < 1e-10),
    # 07: sampled labels: descent lands on π*(r̂) of those labels, so its distance to π*(r) rises
    ("07", ("n_labels=1000",), lambda d, v, out: v["tv_final"] > 1e3 * d["tv_final"] and v["tv_to_fitted"] < 1e-6),
    # 08: the squared-margin loss at a larger β has a smaller target 1/β: less held-out h, less KL
    ("08", ("beta=2.0",), lambda d, v, out: v["heldout_h"] < d["heldout_h"]
     and v["ev"]["kl_to_ref"] < d["ev"]["kl_to_ref"]),
    # 09: β ten times smaller: the first step's loss change ~10x smaller, its change of h the same (AdamW)
    ("09", ("beta=0.05",), lambda d, v, out: (v["first_loss"] - v["after"].item()) < (d["first_loss"] - d["after"].item()) / 5
     and v["margin_moved"] == pytest.approx(d["margin_moved"], rel=0.05)),
    # 06: no KL penalty: the run's own stage trains with β = 0; KL grows, the proxy gains on the gold
    # reward (both in SFT standard deviations)
    ("06", ("beta=0.0",), lambda d, v, out: v["m"]["config"]["beta"] == 0.0 and v["kl_end"] > d["kl_end"]
     and v["proxy_rise"] - v["gold_rise"] > d["proxy_rise"] - d["gold_rise"]),
    # 18: λ = 1 gives the plain reward-to-go, λ = 0 each token's own reward (V = 0 at the first batch)
    ("18", ("lam=1.0",), lambda d, v, out: v["from_to_go"] < 1e-6 < d["from_to_go"]),
    ("18", ("lam=0.0",), lambda d, v, out: v["from_own"] < 1e-6 < d["from_own"]),
    # 19: a larger target margin trains (it is in the unit's key): its held-out margin grows, DPO's is reused
    ("19", ("target=3.0",), lambda d, v, out: v["margins_at_end"]["smooth-hinge"] > d["margins_at_end"]["smooth-hinge"]
     and v["rows"]["smooth-hinge"]["kl_to_ref"] > d["rows"]["smooth-hinge"]["kl_to_ref"]
     and v["margins_at_end"]["sigmoid"] == d["margins_at_end"]["sigmoid"] and "loss args {'target': 3.0}" in out),
    # 19: the new losses on 3 seeds: each reading against DPO is paired over 3 seeds, with an interval
    ("19", ("seeds=3",), lambda d, v, out: all(x.n == 3 and x.verdict != "one seed" for row in v["versus"].values()
                                                for x in row.values())
     and all(x.n == 1 for row in d["versus"].values() for x in row.values())),
    # 20: the whole museum: every fault, the three of the default reused as they were
    ("20", ("museum=true",), lambda d, v, out: set(v["rows"]) == {"clean", *v["FAULTS"]}
     and all(v["rows"][f]["eval"] == d["rows"][f]["eval"] for f in d["LESSON_FAULTS"])),
]


@pytest.mark.slow
@pytest.mark.parametrize("number,sets,check", TRIES, ids=[f"{n}:{' '.join(s)}" for n, s, _ in TRIES])
def test_each_try_moves_its_number_as_the_lesson_says(number, sets, check, lesson, folder):
    default, _ = lesson(number)
    script = next(s for s in TUTORIALS if s.name.startswith(number))
    variant, out = run_lesson(script, folder, *sets)
    assert "Try variant:" in out
    assert check(default, variant, out), f"{number} --set {' '.join(sets)}: the number did not move as the lesson says"


def test_every_try_in_a_lesson_is_tested():
    """A lesson's markdown marks each *Try* with the --set it uses; each of those is in TRIES."""
    import re
    tested = {(n, s) for n, sets, _ in TRIES for s in sets}
    for script in TUTORIALS:
        for name_value in re.findall(r"\*Try\*[^\n]*?`--set ([\w.=+-]+)`", script.read_text(encoding="utf-8")):
            assert (script.name[:2], name_value) in tested, f"{script.name}: Try --set {name_value} has no test"


def test_a_cell_ending_in_a_figure_is_caught(tmp_path):
    """The cell-by-cell run catches what a notebook would print as text; `show(fig)` passes."""
    lesson = tmp_path / "99_figure.py"
    lesson.write_text("# %%\nfrom matplotlib.figure import Figure\nfrom minidpo.harness.tutorial import show\n"
                      "fig = Figure()\nshow(fig)\n# %% [markdown]\n# text\n\n# %%\nx = 2\nx + 1\n")
    g, _ = run_lesson(lesson, tmp_path)
    assert g["x"] == 2
    lesson.write_text(lesson.read_text() + "\n# %%\nfig\n")
    with pytest.raises(AssertionError, match="ends in a Figure"):
        run_lesson(lesson, tmp_path)


def test_every_lesson_says_what_it_needs_and_shows_first_and_what_to_remember_last():
    for script in TUTORIALS:
        text = script.read_text(encoding="utf-8")
        opening = text[:text.index("\n# %%\n")]  # the first markdown cell
        assert "**You need**" in opening and "**You will see**" in opening, f"{script.name}: say what it needs and shows"
        last = text[text.rindex("# %% [markdown]"):]
        assert last.startswith("# %% [markdown]\n# ## What to remember"), f"{script.name}: end with what to remember"


def test_a_lesson_runs_the_scripts_settings_on_two_threads_unless_told(monkeypatch, tmp_path):
    """A notebook runs what the script runs (no silent switch to the tiny settings on a CPU); the
    tiny settings only when asked; torch pinned to the committed notebooks' 2 threads."""
    from minidpo.harness.tutorial import tutorial_run
    before = torch.get_num_threads()
    monkeypatch.delenv("MINIDPO_FAST", raising=False)
    monkeypatch.delenv("MINIDPO_THREADS", raising=False)
    try:
        monkeypatch.setattr(sys, "argv", ["lesson", "--out", str(tmp_path / "a")])
        torch.set_num_threads(1)
        assert not tutorial_run("x").fast and torch.get_num_threads() == 2
        monkeypatch.setenv("MINIDPO_FAST", "1")
        monkeypatch.setenv("MINIDPO_THREADS", "1")
        monkeypatch.setattr(sys, "argv", ["lesson", "--out", str(tmp_path / "b")])
        assert tutorial_run("x").fast and torch.get_num_threads() == 1
        monkeypatch.setenv("MINIDPO_THREADS", "two")
        with pytest.raises(SystemExit, match="error: MINIDPO_THREADS=two"):
            tutorial_run("x")
    finally:
        torch.set_num_threads(before)
