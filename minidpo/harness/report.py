"""summary.json and report.md for a run folder: the comparison a learner reads top to bottom.

The report says where each number comes from: for every stage, whether the command that wrote the
report computed it or reused it from an earlier command, when it finished, the files it read
(path and content-hash prefix) and its settings, all read from the stages' provenance records.
When DPO and the reward model did not learn from the same preference file, it says so beside the
comparison.
"""
from __future__ import annotations

import math

from . import headline, plots, provenance
from ..checkpoint import atomic_write, read_json, write_json
from ..evaluate import first_per_prompt
from .stages import LONG_STUDIES, OPTIONAL, PIPELINE, STAGES, STUDIES

TRAINED = ("sft", "eval_sft", "prefs", "reward_model", "rlhf", "dpo", "equivalence", "eval_rlhf", "eval_dpo")
FIGURES = ("sft_curve.png", "gold_hist.png", "reward_model.png", "rlhf_curves.png", "dpo_metrics.png",
           "equivalence.png", "ipo_contrast.png")


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
    eq, ev = read_json(run.path("equivalence.json")), evaluations(run)
    timings = stage_seconds(run)
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
        "data": data_sources(run),
        "timings": {s: timings.get(s) for s in TRAINED},
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


def evaluations(run) -> dict:
    """{"rlhf": ..., "dpo": ...}: each tuned policy's evaluation on the held-out films."""
    return {m: read_json(run.path(f"eval_{m}.json")) for m in ("rlhf", "dpo")}


def stage_seconds(run) -> dict:
    """Wall time of each stage, from its provenance record (when it was last computed)."""
    return {name: (run.record(name) or {}).get("seconds") for name in (*TRAINED, *OPTIONAL, *STUDIES, *LONG_STUDIES)}


def data_sources(run) -> dict:
    """Which preference file each learner of preferences read: {stage: {file, pairs, sha256}}."""
    out = {}
    for stage, metrics_file, key in (("dpo", "dpo_metrics.json", "train_data"),
                                     ("reward_model", "reward_model_metrics.json", "train_pairs")):
        rec = run.record(stage)
        m = read_json(run.path(metrics_file))
        pairs = m[key]["read"] if isinstance(m[key], dict) else m[key]
        out[stage] = {"file": rec["sources"]["train_data"], "pairs": pairs,
                      "sha256": rec["key"]["inputs"]["train_data"]}
    out["same_data"] = out["dpo"]["sha256"] == out["reward_model"]["sha256"]
    return out


def write_report(run) -> dict:
    """The `report` stage: reused while every file it reads is unchanged."""
    inputs = {n: run.path(n) for n in ("sft_metrics.json", "eval_sft.json", "prefs_report.json",
                                       "reward_model_metrics.json", "rlhf_metrics.json", "dpo_metrics.json",
                                       "equivalence.json", "eval_rlhf.json", "eval_dpo.json")}
    inputs.update({f"provenance/{n}": provenance.record_path(run.out, n) for n in TRAINED})
    inputs.update({n: run.path(STAGES[n].outputs[0]) for n in (*OPTIONAL, *STUDIES, *LONG_STUDIES)
                   if run.path(STAGES[n].outputs[0]).is_file()})
    run.cached("report", {}, inputs, lambda: _write_report(run), outputs=("summary.json", "report.md", *FIGURES))
    return read_json(run.path("summary.json"))


def _write_report(run) -> None:
    summary = build_summary(run)
    write_json(run.path("summary.json"), summary)
    sft_m, sft_e = read_json(run.path("sft_metrics.json")), read_json(run.path("eval_sft.json"))
    rm, rlhf = read_json(run.path("reward_model_metrics.json")), read_json(run.path("rlhf_metrics.json"))
    dpo, eq, ev = read_json(run.path("dpo_metrics.json")), read_json(run.path("equivalence.json")), evaluations(run)
    prefs = read_json(run.path("prefs_report.json"))
    plots.sft_curve(sft_m["history"], run.path("sft_curve.png"))
    plots.gold_histograms({"corpus": sft_e["corpus"]["gold"], "SFT samples": sft_e["gold"],
                           "RLHF samples": ev["rlhf"]["gold"], "DPO samples": ev["dpo"]["gold"]},
                          run.path("gold_hist.png"), "Gold reward of held-out samples")
    plots.reward_model_figure(rm, run.path("reward_model.png"))
    plots.rlhf_curves(rlhf["history"], run.path("rlhf_curves.png"))
    plots.dpo_metrics_figure(dpo["history"], run.path("dpo_metrics.png"))
    plots.equivalence_figure(eq, run.path("equivalence.png"))
    plots.ipo_figure(eq["ipo_contrast"], run.path("ipo_contrast.png"))
    t, cost, data = summary["timings"], summary["cost"], summary["data"]
    sft_row = {**summary["sft"], "win_rate_vs_sft": 0.5}
    lines = [
        "# minidpo run report", "",
        f"Run folder `{run.out}`, seed {run.seed}, device {run.device}, dtype {run.dtype_name}, "
        f"{'fast (tiny) configs' if run.fast else 'default configs'}. " + _computed_line(run), "",
        "## SFT vs RLHF vs DPO on held-out films", "",
        f"{len(sft_e['gold'])} samples per method (temperature 1) on films never seen in training; "
        "win rate = P[gold(method) > gold(SFT)] on the same prompts, ties ½; KL = mean Σ_t log π/π_ref "
        "over the method's own samples (nats); fluency = the world's grammar check.", "",
        "| method | gold reward | win rate vs SFT | KL to ref | fluency | unique responses | length (tokens) | train wall time (s) | sequences forward |",
        "|---|---|---|---|---|---|---|---|---|",
        _row("SFT", sft_row, f"{t['sft']:.0f}" if t["sft"] else "-", "-"),
        _row("RLHF (RM + REINFORCE)", summary["rlhf"], f"{t['rlhf_road']:.0f}", cost["rlhf"]["forward"]),
        _row("DPO", summary["dpo"], f"{t['dpo']:.0f}" if t["dpo"] else "-", cost["dpo"]["forward"]),
        *[_row(f"RLHF (RM + {label})", read_json(run.path(f"eval_{m}.json")),
               f"{(t['reward_model'] or 0) + (run.record(m) or {}).get('seconds', 0):.0f}", "-")
          for m, label in (("ppo", "PPO"), ("grpo", "GRPO")) if run.path(f"eval_{m}.json").is_file()],
        "", _data_line(data, rlhf), "", f"The corpus itself scores {summary['sft']['corpus_gold_reward']:+.3f} ± "
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
        f"Trained on `{data['dpo']['file']}` ({data['dpo']['pairs']} pairs read, "
        f"{dpo['train_data']['truncated']} truncated, {len(dpo['train_data']['refused'])} lines refused). "
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
        "## Samples, side by side (same held-out prompt; the tuned policies are sampled independently of SFT)", "",
        "| prompt | SFT | RLHF | DPO |", "|---|---|---|---|",
    ]
    for i in first_per_prompt(sft_e["samples"])[:10]:  # the first sample of 10 films
        cells = [sft_e["samples"][i], ev["rlhf"]["samples"][i], ev["dpo"]["samples"][i]]
        lines.append(f"| {cells[0]['prompt']} | " + " | ".join(f"{c['response']} ({c['gold']:+.1f})" for c in cells) + " |")
    lines += critics_sections(run)
    lines += long_study_sections(run)
    lines += sources_section(run)
    text = "\n".join(lines) + "\n"
    atomic_write(run.path("report.md"), lambda f: f.write(text.encode("utf-8")))


def _computed_line(run) -> str:
    done = [n for n in TRAINED if n in run.computed]
    if len(done) == len(TRAINED):
        return "Every stage below was computed by the command that wrote this report."
    if not done:
        return ("Every stage below was reused from earlier commands (inputs unchanged); when each finished "
                "is in the last section.")
    return (f"The command that wrote this report computed {', '.join(done)}; it reused "
            f"{', '.join(n for n in TRAINED if n not in done)} from earlier commands (inputs unchanged; "
            "see the last section).")


def _data_line(data: dict, rlhf: dict) -> str:
    d, r = data["dpo"], data["reward_model"]
    if rlhf["config"].get("reward") == "gold":
        head = "RLHF here optimised the gold reward itself (no reward model). "
    else:
        head = ""
    if data["same_data"]:
        return head + (f"DPO and the reward model learned from the same preference file, `{d['file']}` "
                       f"({d['pairs']} pairs, sha256 {provenance.short(d['sha256'])}).")
    return head + (f"**DPO and RLHF did not see the same data**: DPO learned from `{d['file']}` ({d['pairs']} pairs, "
                   f"sha256 {provenance.short(d['sha256'])}), the reward model from `{r['file']}` ({r['pairs']} "
                   f"pairs, sha256 {provenance.short(r['sha256'])}). Compare the two rows with that in mind.")


def sources_section(run) -> list[str]:
    """Where every number comes from: each stage's record (inputs with hash prefixes, settings)."""
    lines = ["", "## Where every number comes from", "",
             "Each stage is reused only while its settings, seed, dtype, input files (by content hash) and "
             "code are unchanged; `provenance/STAGE.json` holds the full record.", "",
             "| stage | this command | finished | seconds | read (sha256 prefix) | settings |", "|---|---|---|---|---|---|"]
    for name in [*PIPELINE, *OPTIONAL, *STUDIES, *LONG_STUDIES]:
        rec = run.record(name)
        if rec is None or name == "report":
            continue
        status = "computed" if name in run.computed else "reused"
        read = "<br>".join(f"{role}: `{src}` {provenance.short(rec['key']['inputs'].get(role))}"
                           for role, src in rec.get("sources", {}).items()) or "-"
        settings = ", ".join(f"{k}={v}" for k, v in rec["key"]["config"].items()
                             if not isinstance(v, (dict, list)) and k not in ("log_every", "eval_every"))
        lines.append(f"| {name} | {status} | {rec['finished']} | {rec['seconds']:.1f} | {read} | {settings} |")
    return lines


def long_study_sections(run) -> list[str]:
    """Sections for the long studies whose results are in the run folder (their own commands); the
    tables are the README's (`headline`), rendered from the same numbers."""
    out, h, studies = [], headline.extract(run.out), headline.studies(run.out)
    if "frontier" in studies:
        f = studies["frontier"]
        out += ["", "## 12. The paper's Figure 2: reward against KL for every method", "",
                "Each method's grid, and what one unit spends (every RL unit samples the same number of responses):", "",
                *headline.budgets_table(f["budgets"]), "",
                f"Gold reward read off each method's frontier (the upper concave hull of its points along training "
                f"and the SFT point, per seed) at matched KL, mean ± std over the seeds (of {len(f['seeds'])}) that "
                "reach that KL ((n=k) where only k do; each seed: its own pairs and reward model); '-' where no "
                "seed's frontier reaches it. PPO-GT learns from the gold reward: one row for both conditions.", "",
                *headline.frontier_table(f), "",
                "DPO against each method, paired by seed: the difference of the two frontiers in each seed that both "
                "reach, its mean and 95 % interval (Student t over the seeds); bold = the interval excludes 0.", "",
                *headline.paired_table(f), "",
                *(["The pipeline's own single runs (one seed, their own budgets), marked on the figure:", "",
                   *headline.pipeline_table(f), ""] if f.get("pipeline") else []),
                "![frontier](frontier/frontier.png)"]
    if "ablation" in studies:
        a = studies["ablation"]
        out += ["", "## 13. Why: from this setting to the paper's, one factor at a time", "",
                (f"At KL = {a['primary_kl']} nats" if a["primary_kl"] is not None else
                 "No matched KL is reached by both methods in every row")
                + "; DPO − RL paired by seed: mean and 95 % interval (Student t over the seeds), bold when it "
                "excludes 0; the row's step: its DPO − RL minus the row above's, paired by seed. One factor at a "
                "time: each step is measured given the rows above it (another order may give other steps).", "",
                *headline.ablation_table(a), "", "![ablation](frontier/ablation.png)"]
    if "losses" in h:
        x = h["losses"]
        out += ["", "## 14. The loss bench", "",
                f"Every registered loss, {x['epochs']} epoch on the same pairs, {len(x['seeds'])} seeds; ranked by gold "
                f"on each seed's frontier at KL {x['matched_kl']} (mean ± std); the losses that not every seed takes "
                "that far ((n=k): only k seeds; '-': none) follow, listed by their final gold, unranked.", "",
                *headline.losses_table(x), "", "Each loss against DPO at the same KL, paired by seed (the 95 % "
                "interval is Student t over the seeds where both frontiers reach it):", "",
                *bench_paired_lines(read_json(run.out / "frontier" / "losses.json")),
                "", "![loss bench](frontier/losses.png)"]
    out += ppo_vs_reinforce_section(run) + museum_section(run) + microscope_section(run)
    return out


def _interval(d: dict | None) -> str:
    """A paired difference as the report prints it: mean, 95 % interval, verdict."""
    if d is None:
        return "-"
    if d["n"] < 2:
        return f"{d['gap_mean']:+.3f} (one seed)"
    return f"{d['gap_mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], {d['verdict']}"


def _mean_std(cell: dict, fmt: str = "+.3f") -> str:
    return f"{cell['mean']:{fmt}} ± {cell['std']:.3f}"


def bench_paired_lines(bench: dict) -> list[str]:
    """The loss bench read against DPO (the report's section 14 and docs/loss-bench.md): each loss
    ranked by gold at the bench's matched KL, DPO − loss paired by seed with its 95 % interval and
    verdict; the losses not every seed takes that far follow, unranked."""
    kl, n, paired = bench["matched_kl"], len(bench["seeds"]), bench.get("paired", {})
    lines = [f"| loss | gold at KL {kl} (mean ± std) | DPO − loss, paired by seed | 95 % interval | seeds | verdict |",
             "|---|---|---|---|---|---|"]
    for name in bench["order"]:
        cell, d = bench["rows"][name]["matched"].get(str(kl)), paired.get(name, {}).get(str(kl))
        gold = (f"{cell['gold_mean']:+.2f} ± {cell['gold_std']:.2f}" + ("" if cell["n"] == n else f" (n={cell['n']})")
                if cell else "-")
        if name == bench.get("base"):
            lines.append(f"| {name} (DPO) | {gold} | | | | |")
        elif d is None:
            lines.append(f"| {name} | {gold} | - | - | 0 | no seed takes both this far |")
        else:
            interval = f"{d['low']:+.2f} … {d['high']:+.2f}" if d["n"] > 1 else "-"
            lines.append(f"| {name} | {gold} | {d['gap_mean']:+.2f} | {interval} | {d['n']} | {d['verdict']} |")
    return lines


def ppo_vs_reinforce_section(run) -> list[str]:
    f = run.out / "ppo_vs_reinforce" / "ppo_vs_reinforce.json"
    if not f.is_file():
        return []
    r = read_json(f)
    labels, (a, b) = r["methods"], r["difference"]
    return ["", "## 15. PPO against REINFORCE", "",
            f"Both at β {r['beta']} on the same {r['budgets'][a]['samples_per_unit']} sampled responses, "
            f"{len(r['seeds'])} seeds; {labels[a]} − {labels[b]} in gold on each seed's frontier, paired by seed.", "",
            *ppo_vs_reinforce_table(r), "", "![PPO vs REINFORCE](ppo_vs_reinforce/ppo_vs_reinforce.png)"]


def ppo_vs_reinforce_table(r: dict) -> list[str]:
    """PPO − REINFORCE at each matched KL (the report's section 15 and docs), then where each ended."""
    labels, (a, b) = r["methods"], r["difference"]
    lines = [f"| KL | seeds | {labels[a]} − {labels[b]} | 95 % interval | verdict |", "|---|---|---|---|---|"]
    for kl in r["kl_targets"]:
        d = r["paired"].get(str(kl))
        if d:
            interval = f"{d['low']:+.3f} … {d['high']:+.3f}" if d["n"] > 1 else "-"
            lines.append(f"| {kl} | {d['n']} | {d['gap_mean']:+.3f} | {interval} | {d['verdict']} |")
    lines.append(f"| end of the budget | {len(r['seeds'])} | KL {labels[a]} "
                 + ", ".join(f"{x['kl_to_ref']:.2f}" for x in r["final"][a]) + f"; {labels[b]} "
                 + ", ".join(f"{x['kl_to_ref']:.2f}" for x in r["final"][b]) + " | | |")
    return lines


def museum_section(run) -> list[str]:
    f = run.out / "museum" / "museum.json"
    if not f.is_file():
        return []
    r = read_json(f)
    spread = r["clean_spread"]
    return ["", "## 16. The bug museum", "",
            f"Each classic DPO bug switched on alone, {len(r['seeds'])} seeds; its gold cost = clean − faulty gold, "
            f"paired by seed. The clean run's gold over the seeds: {spread['mean']:+.3f} ± {spread['std']:.3f}.", "",
            *museum_costs_table(r)]


def museum_costs_table(r: dict) -> list[str]:
    """Each bug's gold cost paired by seed, its interval and verdict, and the doctor's failing checks
    (the report's section 16 and docs/doctor-museum-microscope.md)."""
    lines = [f"| bug | gold cost (clean − bug), {len(r['seeds'])} seeds | 95 % interval | verdict | fluency, seed "
             f"{r['seeds'][0]} | the doctor's failing checks |", "|---|---|---|---|---|---|"]
    for name, d in r["costs"].items():
        row = r["rows"][name]
        lines.append(f"| `{name}` | {d['gap_mean']:+.2f} | {d['low']:+.2f} … {d['high']:+.2f} | {d['verdict']} | "
                     f"{row['eval']['fluency']:.3f} | {', '.join(f'`{c}`' for c in row['failed_checks'])} |")
    return lines


def microscope_section(run) -> list[str]:
    f = run.out / "microscope" / "microscope.json"
    if not f.is_file():
        return []
    return ["", "## 17. The likelihood-displacement microscope", "", *microscope_table(read_json(f))]


def microscope_table(r: dict) -> list[str]:
    """What the microscope measured (the report's section 17 and docs/doctor-museum-microscope.md):
    how the falls of log π(y_w) relate to CHES and its length-normalised form, each with its
    interval; then, on the enumerable GPT, the deterministic pair under DPO and IPO at the end of
    training, and the mass on responses no pair contains."""
    p = r["pairs"]
    lines = [f"log π(y_w) fell in {p['chosen_down_frac']:.1%} of {len(p['ches'])} training pairs of the run's DPO policy.", "",
             "| score | corr with Δ log π(y_w) | 95 % interval | verdict | fell: largest quarter − smallest | 95 % interval |",
             "|---|---|---|---|---|---|"]
    for key, words in (("ches", "CHES"), ("ches_normalised", "length-normalised CHES")):
        c, q = p[f"corr_{key}_d_chosen"], p[f"{key}_quarters"]
        lines.append(f"| {words} | {c['r']:+.3f} | {c['low']:+.3f} … {c['high']:+.3f} | {c['verdict']} | "
                     f"{q['a']:.1%} − {q['b']:.1%} = {q['gap']:+.3f} | {q['low']:+.3f} … {q['high']:+.3f} |")
    c = p["corr_ches_length_gap"]
    lines += ["", f"Raw CHES against the length gap |y_l| − |y_w|: r = {c['r']:+.3f} ({c['low']:+.3f} … {c['high']:+.3f}).", ""]
    pair = r["enumerable"]["deterministic_pair"]
    lines += ["| loss, β | margin h at the end | IPO's target 1/(2β) | π(y_w): reference → end | π(y_l): reference → end |",
              "|---|---|---|---|---|"]
    for name, trace in pair["traces"].items():
        loss, beta = name.split("_beta")
        last = trace[-1]
        h = math.log(last["p_winner"] / pair["ref_p_winner"]) - math.log(last["p_loser"] / pair["ref_p_loser"])
        target = f"{1 / (2 * float(beta)):.2f}" if loss == "ipo" else "-"
        lines.append(f"| {'DPO' if loss == 'sigmoid' else 'IPO'}, {beta} | {h:+.2f} | {target} | "
                     f"{pair['ref_p_winner']:.3f} → {last['p_winner']:.2e} | {pair['ref_p_loser']:.3f} → {last['p_loser']:.2e} |")
    o = r["enumerable"]["out_of_data"]
    lines += ["", "Probability on the responses in no pair: " + ", ".join(
        f"{k} {v:.4f}" for k, v in o.items() if isinstance(v, float) and "gain" not in k and k != "beta") + "."]
    return lines


def critics_sections(run) -> list[str]:
    """Sections for the critics' studies whose results are in the run folder (`run --all`). Every
    comparison is paired by seed (95 % interval of the difference, its verdict)."""
    out = []
    f = run.out / "overoptimisation" / "overoptimisation.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 7. Reward over-optimisation", "",
                f"Seeds {r['seeds']}. d = √KL; best-of-n at the analytic KL, RL at its training samples' KL (10-step means). "
                "A fitted peak beyond the largest d measured is an extrapolation.", "",
                "| seed | push | RM | gold at the start | largest gold (at d) | gold at the end (d) | proxy at the end | "
                "fitted peak d (in the data?) | R² |", "|---|---|---|---|---|---|---|---|---|"]
        for one in r["per_seed"]:
            for kind, summaries, curves in (("best-of-n", one["best_of_n_summary"], one["best_of_n"]),
                                            ("RL", one["rl_summary"], one["rl_curves"])):
                for k, v in summaries.items():
                    peak = "none" if v["fit_peak_d"] is None else f"{v['fit_peak_d']:.2f} ({'yes' if v['fit_peak_in_data'] else 'no'})"
                    r2 = "-" if v["fit_r2"] is None else f"{v['fit_r2']:.2f}"
                    out.append(f"| {one['seed']} | {kind} | {k} | {curves[k][0]['gold']:+.3f} | {v['peak_gold']:+.3f} "
                               f"({v['peak_d']:.2f}) | {v['final_gold']:+.3f} ({v['final_d']:.2f}) | {v['final_proxy']:+.3f} | "
                               f"{peak} | {r2} |")
        p = r["penalty"]
        out += ["", f"β = 0.01 − β = 0 on their frontiers at the largest KL both reach: gold {_interval(p['gold'])}.",
                "", "![over-optimisation](overoptimisation/overoptimisation.png)"]
    f = run.out / "diversity" / "diversity.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 8. Diversity against β", "", f"End of training, mean ± std over seeds {r['seeds']}.", "",
                "| method | β | gold | entropy (nats/token) | unique | KL |", "|---|---|---|---|---|---|"]
        for m, by_beta in r["table"].items():
            for b, row in sorted(by_beta.items(), key=lambda kv: float(kv[0])):
                out.append(f"| {m.upper()} | {b} | {_mean_std(row['gold_reward'])} | {_mean_std(row['entropy'], '.3f')} | "
                           f"{_mean_std(row['unique_frac'], '.3f')} | {_mean_std(row['kl_to_ref'], '.2f')} |")
        mt = r["matched"]
        out += ["", f"DPO − REINFORCE (default β) along training at the largest KL both reach: entropy "
                f"{_interval(mt['entropy'])}; unique {_interval(mt['unique_frac'])}.",
                "", "![diversity](diversity/diversity.png)"]
    f = run.out / "cost.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 9. The cost of RL", "",
                "One run (one seed). Each RL road includes training its reward model. Models held = in memory while the road trains.", "",
                "| road | wall (s) | gold | models held | parameters | tokens forward | tokens backward | samples generated |",
                "|---|---|---|---|---|---|---|---|"]
        for k, v in r.items():
            out.append(f"| {k} | {v['wall_s']:.1f} | {v['gold_reward']:+.3f} | {', '.join(v['models'])} | "
                       f"{v['params'] / 1e6:.2f} M | {v['tokens_forward']:.0f} | {v['tokens_backward']:.0f} | "
                       f"{v['samples_generated']} |")
    f = run.out / "failure_modes" / "failure_modes.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 10. DPO's own failure modes and remedies", "",
                f"End of training, mean ± std over seeds {r['seeds']} (each at its own KL):", "",
                "| variant | gold | win rate | fluency | KL | Δ logps/chosen | Δ logps/rejected |", "|---|---|---|---|---|---|---|"]
        out += [f"| {k} | {_mean_std(v['gold_reward'])} | {_mean_std(v['win_rate_vs_sft'], '.3f')} | "
                f"{_mean_std(v['fluency'], '.3f')} | {_mean_std(v['kl_to_ref'], '.2f')} | "
                f"{_mean_std(v['logps_chosen_change'], '+.2f')} | {_mean_std(v['logps_rejected_change'], '+.2f')} |"
                for k, v in r["remedies"].items()]
        out += ["", "Each remedy − DPO at the same KL (both frontiers at the largest KL both reach), paired by seed:", "",
                "| remedy | KL per seed | gold | fluency |", "|---|---|---|---|"]
        out += [f"| {k} | {', '.join(f'{x:.2f}' for x in m['kl'])} | {_interval(m['gold'])} | {_interval(m['fluency'])} |"
                for k, m in r["matched"].items()]
        out += ["", "![failure modes](failure_modes/failure_modes.png)"]
    f = run.out / "online_dpo" / "online_dpo.json"
    if f.is_file():
        r = read_json(f)
        out += ["", "## 11. Online DPO", "", f"{r['rounds']} rounds, seeds {r['seeds']}. End of training (each at its own KL):", "",
                "| run | gold | fluency | KL |", "|---|---|---|---|"]
        out += [f"| {k} | {_mean_std(v['gold_reward'])} | {_mean_std(v['fluency'], '.3f')} | {_mean_std(v['kl_to_ref'], '.2f')} |"
                for k, v in r["final"].items()]
        out += ["", "At the same KL (both frontiers at the largest KL both reach), paired by seed:", "",
                "| comparison | KL per seed | gold | fluency |", "|---|---|---|---|"]
        out += [f"| {k} | {', '.join(f'{x:.2f}' for x in m['kl'])} | {_interval(m['gold'])} | {_interval(m['fluency'])} |"
                for k, m in r["matched"].items()]
        out += ["", "![online DPO](online_dpo/online_dpo.png)"]
    return out
