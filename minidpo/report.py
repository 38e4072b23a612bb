"""summary.json and report.md for a run folder: the comparison a learner reads top to bottom."""
from __future__ import annotations

from . import plots
from .checkpoint import read_json, write_json
from .evaluate import first_per_prompt

STAGES = ("sft", "eval_sft", "prefs", "reward_model", "rlhf", "dpo", "equivalence", "evaluate")


def _sequences_processed(prefs: dict, rm: dict, rlhf: dict, dpo: dict) -> dict:
    """Sequences that went through a model forward pass, per road (backward passes in brackets).
    DPO: the reference scores every pair once, then the policy sees 2 sequences per pair per epoch.
    RLHF: the reward model sees 2 per pair per epoch plus its normalisation samples; each RL sample
    is generated, scored by the reference and the reward model, and re-scored by the policy."""
    n_train, n_val = prefs["train"]["pairs"], prefs["val"]["pairs"]
    dpo_fwd = 2 * (n_train + n_val) + 2 * n_train * dpo["config"]["epochs"]
    rm_fwd = 2 * rm["train_pairs"] * rm["config"]["epochs"] + 2 * rm["config"]["norm_samples"]
    rl_fwd = 4 * rlhf["samples_generated"]
    return {"dpo": {"forward": dpo_fwd, "backward": 2 * n_train * dpo["config"]["epochs"]},
            "rlhf": {"forward": rm_fwd + rl_fwd,
                     "backward": 2 * rm["train_pairs"] * rm["config"]["epochs"] + rlhf["samples_generated"],
                     "samples_generated": rlhf["samples_generated"]}}


def build_summary(run) -> dict:
    sft_m, sft_e = read_json(run.path("sft_metrics.json")), read_json(run.path("eval_sft.json"))
    prefs, rm = read_json(run.path("prefs_report.json")), read_json(run.path("reward_model_metrics.json"))
    rlhf, dpo = read_json(run.path("rlhf_metrics.json")), read_json(run.path("dpo_metrics.json"))
    eq, ev = read_json(run.path("equivalence.json")), read_json(run.path("eval.json"))
    timings = read_json(run.path("timings.json"))
    keys = ("gold_reward", "gold_std", "win_rate_vs_sft", "kl_to_ref", "fluency", "unique_frac",
            "distinct_2", "length")
    summary = {
        "config": run.config(), "seed": run.seed,
        "sft": {**{k: sft_e[k] for k in keys}, "val_loss": sft_m["val_loss"],
                "corpus_gold_reward": sft_e["corpus"]["gold_reward"], "corpus_gold_std": sft_e["corpus"]["gold_std"]},
        "preferences": {"train_pairs": prefs["train"]["pairs"], "val_pairs": prefs["val"]["pairs"],
                        "refused_identical": prefs["train"]["refused_identical"] + prefs["val"]["refused_identical"],
                        "oracle_accuracy_train": prefs["train"]["oracle_accuracy"]},
        "reward_model": {"val_accuracy": rm["val_accuracy"], "oracle_accuracy": rm["oracle_accuracy"],
                         "accuracy_vs_oracle": rm["accuracy_vs_oracle"],
                         "gold_correlation": rm["gold_correlation_heldout"]},
        "rlhf": {k: ev["rlhf"][k] for k in keys},
        "dpo": {**{k: ev["dpo"][k] for k in keys},
                "val_implicit_reward_accuracy": dpo["val_implicit_reward_accuracy"]},
        "equivalence": {k: eq[k] for k in ("tv_dpo_vs_optimal_fitted", "tv_rlhf_vs_optimal_fitted",
                                           "tv_reinforce_vs_optimal_fitted", "implicit_reward_max_error",
                                           "z_cancels_max_diff", "gradient_max_rel_error")},
        "cost": _sequences_processed(prefs, rm, rlhf, dpo),
        "timings": {s: timings.get(s) for s in STAGES},
        # wall-clock measurements: the only numbers that differ between two runs with one seed
        "throughput": {"sft_tokens_per_s": sft_m["tokens_per_s"], "sft_mfu": sft_m["mfu"],
                       "rlhf_seconds_per_step": rlhf["seconds_per_step"]},
    }
    summary["timings"]["rlhf_road"] = (timings.get("reward_model") or 0) + (timings.get("rlhf") or 0)
    summary["timings"]["dpo_road"] = timings.get("dpo")
    return summary


def _row(name, s, seconds, fwd):
    return (f"| {name} | {s['gold_reward']:+.3f} ± {s['gold_std']:.2f} | {s['win_rate_vs_sft']:.3f} | "
            f"{s['kl_to_ref']:.2f} | {s['fluency']:.3f} | {s['unique_frac']:.3f} | {s['length']:.1f} | "
            f"{seconds} | {fwd} |")


def write_report(run) -> dict:
    summary = build_summary(run)
    write_json(run.path("summary.json"), summary)
    sft_m, sft_e = read_json(run.path("sft_metrics.json")), read_json(run.path("eval_sft.json"))
    rm, rlhf = read_json(run.path("reward_model_metrics.json")), read_json(run.path("rlhf_metrics.json"))
    dpo, eq, ev = read_json(run.path("dpo_metrics.json")), read_json(run.path("equivalence.json")), read_json(run.path("eval.json"))
    prefs = read_json(run.path("prefs_report.json"))
    figs = {
        "sft_curve": plots.sft_curve(sft_m["history"], run.path("sft_curve.png")),
        "gold_hist": plots.gold_histograms({"corpus": sft_e["corpus"]["gold"], "SFT samples": sft_e["gold"],
                                            "RLHF samples": ev["rlhf"]["gold"], "DPO samples": ev["dpo"]["gold"]},
                                           run.path("gold_hist.png"), "Gold reward of held-out samples"),
        "reward_model": plots.reward_model_figure(rm, run.path("reward_model.png")),
        "rlhf": plots.rlhf_curves(rlhf["history"], run.path("rlhf_curves.png")),
        "dpo": plots.dpo_metrics_figure(dpo["history"], run.path("dpo_metrics.png")),
        "equivalence": plots.equivalence_figure(eq, run.path("equivalence.png")),
        "ipo": plots.ipo_figure(eq["ipo_contrast"], run.path("ipo_contrast.png")),
    }
    t, cost = summary["timings"], summary["cost"]
    sft_row = {**summary["sft"], "win_rate_vs_sft": 0.5}
    lines = [
        "# minidpo run report", "",
        f"Run folder `{run.out}`, seed {run.seed}, device {run.device}, "
        f"{'fast (tiny) configs' if run.fast else 'default configs'}. Every number below was computed in this run.", "",
        "## SFT vs RLHF vs DPO on held-out films", "",
        f"{len(sft_e['gold'])} samples per method (temperature 1) on films never seen in training; "
        "win rate = P[gold(method) > gold(SFT)] on the same prompts, ties ½; KL = mean Σ_t log π/π_ref "
        "over the method's own samples (nats); fluency = the world's grammar check.", "",
        "| method | gold reward | win rate vs SFT | KL to ref | fluency | unique responses | length (tokens) | train wall time (s) | sequences forward |",
        "|---|---|---|---|---|---|---|---|---|",
        _row("SFT", sft_row, f"{t['sft']:.0f}" if t["sft"] else "-", "-"),
        _row("RLHF (RM + REINFORCE)", summary["rlhf"], f"{t['rlhf_road']:.0f}", cost["rlhf"]["forward"]),
        _row("DPO", summary["dpo"], f"{t['dpo']:.0f}" if t["dpo"] else "-", cost["dpo"]["forward"]),
        "", f"The corpus itself scores {summary['sft']['corpus_gold_reward']:+.3f} ± "
        f"{summary['sft']['corpus_gold_std']:.2f}; the best possible review scores about +4.2.", "",
        f"![gold reward histograms]({'gold_hist.png'})", "",
        "## 1. SFT", "",
        f"Held-out response loss {sft_m['val_loss_init']:.2f} → {sft_m['val_loss']:.3f} nats/token; "
        f"{sft_m['tokens_per_s'] / 1e3:.1f}k tokens/s"
        + (f", {100 * sft_m['mfu']:.0f}% of this machine's measured fp32 matmul peak "
           f"({sft_m['matmul_peak_flops'] / 1e9:.0f} GFLOP/s)" if sft_m.get("mfu") else "") + ".", "",
        "![SFT curve](sft_curve.png)", "",
        "## 2. Preference data", "",
        f"{prefs['train']['pairs']} training pairs and {prefs['val']['pairs']} held-out pairs, sampled from the SFT "
        f"model and labelled by Bradley–Terry on the gold reward; {prefs['train']['refused_identical']} + "
        f"{prefs['val']['refused_identical']} candidate pairs were refused because both samples were identical. "
        f"The gold reward itself agrees with the noisy labels {prefs['train']['oracle_accuracy']:.3f} of the time "
        "(the oracle accuracy: the ceiling for any reward model).", "",
        "## 3. Reward model (RLHF, step 1)", "",
        f"Held-out pairwise accuracy {rm['val_accuracy']:.3f} vs oracle {rm['oracle_accuracy']:.3f} "
        f"({rm['accuracy_vs_oracle']:.2f} of the ceiling); correlation with the gold reward on fresh SFT samples "
        f"{rm['gold_correlation_heldout']:.2f}. Output normalised to mean 0, std 1 on SFT samples.", "",
        "![reward model](reward_model.png)", "",
        "## 4. REINFORCE with a KL penalty (RLHF, step 2)", "",
        f"β = {rlhf['config']['beta']}, {rlhf['config']['steps']} steps × {rlhf['config']['prompts_per_step']} prompts × "
        f"{rlhf['config']['k']} samples. Seconds per step: "
        + ", ".join(f"{k} {v:.3f}" for k, v in rlhf["seconds_per_step"].items()) + ".", "",
        "![RLHF curves](rlhf_curves.png)", "",
        "## 5. DPO", "",
        f"β = {dpo['config']['beta']}, loss `{dpo['config']['loss_type']}`, {dpo['steps']} steps; implicit-reward "
        f"accuracy on held-out pairs {dpo['val_implicit_reward_accuracy']:.3f}. Watch `logps/chosen`: both "
        "log-probs can fall, only their margin is trained.", "",
        "![DPO metrics](dpo_metrics.png)", "",
        "## 6. The exact equivalence lab", "",
        f"A bandit with {eq['n_prompts']} prompts × {eq['n_responses']} responses, β = {eq['beta']}, "
        f"{eq['n_pairs']} Bradley–Terry pairs.", "",
        "| distance | value |", "|---|---|",
        f"| TV(DPO, π*(r̂)) | {eq['tv_dpo_vs_optimal_fitted']:.2e} |",
        f"| TV(exact RL on r̂, π*(r̂)) | {eq['tv_rlhf_vs_optimal_fitted']:.2e} |",
        f"| TV(REINFORCE on r̂, π*(r̂)) | {eq['tv_reinforce_vs_optimal_fitted']:.2e} |",
        f"| max error of DPO's implicit reward vs r̂ (centred) | {eq['implicit_reward_max_error']:.2e} |",
        f"| Bradley–Terry with vs without β·log Z | {eq['z_cancels_max_diff']:.2e} |",
        f"| DPO gradient: autograd vs closed form (relative, GPT in float64) | {eq['gradient_max_rel_error']:.2e} |",
        "", "![equivalence](equivalence.png)", "", "![IPO contrast](ipo_contrast.png)", "",
        "## Samples, side by side (same held-out prompt, same seed)", "",
        "| prompt | SFT | RLHF | DPO |", "|---|---|---|---|",
    ]
    for i in first_per_prompt(sft_e["samples"])[:10]:  # the first sample of 10 films
        cells = [sft_e["samples"][i], ev["rlhf"]["samples"][i], ev["dpo"]["samples"][i]]
        lines.append(f"| {cells[0]['prompt']} | " + " | ".join(f"{c['response']} ({c['gold']:+.1f})" for c in cells) + " |")
    lines += critics_sections(run)
    lines += ["", "## Wall time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {s} | {v:.1f} |" for s, v in t.items() if v is not None]
    run.path("report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary["figures"] = figs
    return summary


def critics_sections(run) -> list[str]:
    """Sections for the critics' studies whose results are in the run folder (`run --all`)."""
    out = []
    f = run.out / "overoptimisation" / "overoptimisation.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 7. Reward over-optimisation", "",
                "| push | RM | gold peak | at d = √KL | gold at the end | proxy at the end | d at the end |", "|---|---|---|---|---|---|---|"]
        for k, v in r["best_of_n_summary"].items():
            out.append(f"| best-of-n | {k} | {v['peak_gold']:+.3f} | {v['peak_d']:.2f} | {v['final_gold']:+.3f} | "
                       f"{v['final_proxy']:+.3f} | {v['final_d']:.2f} |")
        for k, v in r["rl_summary"].items():
            out.append(f"| RL | {k} | {v['peak_gold']:+.3f} | {v['peak_d']:.2f} | {v['final_gold']:+.3f} | "
                       f"{v['final_proxy']:+.3f} | {v['final_d']:.2f} |")
        out += ["", "![over-optimisation](overoptimisation/overoptimisation.png)"]
    f = run.out / "diversity" / "diversity.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 8. Diversity against β", "", "| method | β | gold | entropy (nats/token) | unique | KL |", "|---|---|---|---|---|---|"]
        out += [f"| {p['method'].upper()} | {p['beta']} | {p['gold_reward']:+.3f} | {p['entropy']:.3f} | "
                f"{p['unique_frac']:.3f} | {p['kl_to_ref']:.2f} |" for p in r["points"]]
        out += ["", "![diversity](diversity/diversity.png)"]
    f = run.out / "cost.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 9. The cost of RL", "", "| road | wall (s) | gold | tokens forward | tokens backward | samples generated | peak RSS (MB) |",
                "|---|---|---|---|---|---|---|"]
        for k, v in r.items():
            mb = f"{v['peak_memory_mb']:.0f}" if v.get("peak_memory_mb") else "-"
            out.append(f"| {k} | {v['wall_s']:.1f} | {v['gold_reward']:+.3f} | {v['tokens_forward']:.0f} | "
                       f"{v['tokens_backward']:.0f} | {v['samples_generated']} | {mb} |")
    f = run.out / "failure_modes" / "failure_modes.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 10. DPO's own failure modes and remedies", "",
                "| variant | gold | win rate | fluency | KL | Δ logps/chosen | Δ logps/rejected |", "|---|---|---|---|---|---|---|"]
        out += [f"| {k} | {v['gold_reward']:+.3f} | {v['win_rate_vs_sft']:.3f} | {v['fluency']:.3f} | {v['kl_to_ref']:.2f} | "
                f"{v['logps_chosen_change']:+.2f} | {v['logps_rejected_change']:+.2f} |" for k, v in r["remedies"].items()]
        out += ["", "![failure modes](failure_modes/failure_modes.png)"]
    f = run.out / "online_dpo" / "online_dpo.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 11. Online DPO", "", "| labels | round | labelled pairs | gold | win rate | fluency | KL |", "|---|---|---|---|---|---|---|"]
        for k, rows in r["online"].items():
            out += [f"| {k} | {x['round']} | {x['labelled_pairs']} | {x['gold_reward']:+.3f} | {x['win_rate_vs_sft']:.3f} | "
                    f"{x['fluency']:.3f} | {x['kl_to_ref']:.2f} |" for x in rows]
        o = r["offline"]
        out += [f"| offline DPO | - | {o['labelled_pairs']} | {o['gold_reward']:+.3f} | {o['win_rate_vs_sft']:.3f} | "
                f"{o['fluency']:.3f} | {o['kl_to_ref']:.2f} |", "", "![online DPO](online_dpo/online_dpo.png)"]
    return out
