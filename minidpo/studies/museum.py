"""The bug museum: the classic DPO bugs, each switched on alone, with its symptom in the metrics
learners watch, what the doctor says, and the gold reward it costs. `python -m minidpo museum`;
one bug in a DPO run: `python -m minidpo dpo --fast --inject NAME`; on the doctor's checks:
`python -m minidpo doctor --fast --inject NAME`.

A fault is applied to what a clean run would train with (`doctor.Setup`): `inject(setup, name)`
returns the same setup with that bug in it, and `train_with_fault` runs the ordinary DPO loop
(`dpo.run_dpo`) on it. The training code itself knows nothing of the museum.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..checkpoint import read_json, save_checkpoint, write_json
from ..data import row
from ..dpo import DPOConfig, pair_logps, run_dpo, train_dpo
from ..evaluate import summary_row
from ..preferences import read_preferences
from ..harness.compare import mean_std, paired
from ..harness.stages import ensure
from ..training import StudyProgress
from .doctor import Setup, build, diagnose, encode_with_truncation, read_curves


@dataclass(frozen=True)
class Fault:
    what: str        # the bug, as it happens in a real code base
    symptom: str     # what a learner sees
    thread: str      # where people met it


FAULTS = {
    "pad-equals-eos": Fault(
        "the end token is treated as padding (pad id = eos id), so it leaves the response mask",
        "nothing teaches the policy when to stop; preference tuning shifts lengths unchecked",
        "https://github.com/huggingface/trl/pull/6357"),
    "dropout-on": Fault(
        "dropout stays on in the policy's log-prob passes while the reference runs without it",
        "the loss is not ln 2 at step 0 and the rewards are noise before any learning",
        "https://github.com/huggingface/trl/issues/744"),
    "shared-reference": Fault(
        "the reference is the policy itself, not a frozen copy",
        "the loss is stuck at ln 2 and every reward at 0: the log-ratios are 0 by construction",
        "https://github.com/huggingface/trl/issues/1627"),
    "swap-labels": Fault(
        "chosen and rejected are swapped when the file is read (a column mapping the wrong way round)",
        "the implicit reward learns, the accuracy rises, and the gold reward falls",
        "https://github.com/huggingface/trl/issues/2578"),
    "merge-boundary": Fault(
        "prompt + response tokenized as one string and the mask placed by the prompt's token count",
        "rows lose the prompt/response separator, the mask can be off by a token; tuning transfers less",
        "https://github.com/huggingface/trl/issues/2054"),
    "truncate-to-empty": Fault(
        "a truncation rule (max length 24) that cuts both completions of a long pair to nothing",
        "those pairs score log π = 0 on both sides: they train nothing, silently (TRL got NaN with means)",
        "https://github.com/huggingface/trl/issues/6548"),
    "mean-logps-without-beta": Fault(
        "mean log-probs per token with the β tuned for sums",
        "a leash about response-length times looser: KL and fluency drift further for the same loss",
        "https://github.com/huggingface/trl/issues/789"),
}
TRUNCATE_TO = 24  # the max length of the truncate-to-empty fault


def inject(s: Setup, fault: str) -> Setup:
    """`s` with one classic bug of FAULTS switched on (a new Setup; `s` itself is not changed)."""
    if fault not in FAULTS:
        raise ValueError(f"--inject must be one of {', '.join(FAULTS)}, not {fault!r}")
    pairs, policy, reference, cfg = s.pairs, s.policy, s.reference, s.cfg
    if fault == "swap-labels":
        pairs = swapped(pairs)
    if fault == "shared-reference":
        reference = policy
    if fault == "dropout-on":
        for module in policy.modules():
            if hasattr(module, "dropout"):
                module.dropout = 0.1
    if fault == "mean-logps-without-beta":
        cfg = replace(cfg, average_logps=True)
    encoded, truncated = _encode(s.tok, pairs, policy.config.block_size, fault)
    return Setup(s.tok, policy, reference, pairs, encoded, truncated, cfg, fault)


def swapped(pairs: list[dict]) -> list[dict]:
    """The pairs as the swap-labels bug reads them: chosen and rejected exchanged."""
    return [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs]


def encode_rows(tok, pairs, block_size, fault=None) -> list:
    """Pairs as rows, as training encodes them, or as the pipeline with `fault` would."""
    return _encode(tok, pairs, block_size, fault)[0]


def _encode(tok, pairs, block_size, fault):
    """Rows as training builds them (doctor.encode_with_truncation), or as a faulty pipeline would."""
    encoded, truncated = [], []
    for i, pair in enumerate(pairs):
        if fault == "merge-boundary":  # one string, mask from the prompt's own token count
            rows = []
            for text in (pair["chosen"], pair["rejected"]):
                joint = [tok.prompt_id] + tok.encode(pair["prompt"] + text) + [tok.end_id]
                n_prompt = 1 + len(tok.encode(pair["prompt"]))
                rows.append((joint[:block_size], ([False] * n_prompt + [True] * len(joint))[:min(len(joint), block_size)]))
            encoded.append(tuple(rows))
            continue
        if fault == "truncate-to-empty":
            p, c, r = tok.encode_prompt(pair["prompt"]), tok.encode_response(pair["chosen"]), tok.encode_response(pair["rejected"])
            longer = max(len(c), len(r))
            if len(p) + longer > TRUNCATE_TO:
                keep = max(0, TRUNCATE_TO - len(p) - longer)  # the off-by-the-longer-completion rule
                truncated.append((i, len(c) + len(r) - 2 * min(keep, len(c), len(r))))
                c, r = c[:keep], r[:keep]
            encoded.append((row(p, c), row(p, r)))
            continue
        [(c_row, r_row)], cut = encode_with_truncation(tok, [pair], block_size)
        truncated += [(i, n) for _, n in cut]
        if fault == "pad-equals-eos":  # the collator masks every pad-id token, the real end token too
            c_row, r_row = [(ids, [m and t != tok.end_id for t, m in zip(ids, mask)]) for ids, mask in (c_row, r_row)]
        encoded.append((c_row, r_row))
    return encoded, truncated


def train_with_fault(cfg, tok, sft_path, train_file, val_file, out_dir, device="cpu", dtype=None, quiet=False,
                     out_name="dpo", fault: str = "shared-reference") -> dict:
    """`dpo.train_dpo` with one bug switched on: the policy, reference, rows and settings come from
    `inject(build(...), fault)`, so the run shows exactly what that bug does."""
    s = inject(build(tok, sft_path, train_file, cfg, device), fault)
    val_pairs = read_preferences(val_file)[0]
    if fault == "swap-labels":  # the same reader reads the held-out file: its labels are swapped too
        val_pairs = swapped(val_pairs)
    val = encode_rows(tok, val_pairs, s.policy.config.block_size, fault)
    shared = s.reference is s.policy
    ref_train = None if shared else pair_logps(s.reference, s.encoded, tok.end_id, s.cfg.average_logps)
    ref_val = pair_logps(s.reference, val, tok.end_id, s.cfg.average_logps)
    out = run_dpo(s.policy, s.cfg, s.encoded, ref_train, val, ref_val, tok.end_id, dtype, quiet,
                  out_dir / f"{out_name}_log.jsonl", reference_model=s.policy if shared else None)
    final = out["history"][-1]
    metrics = {"config": asdict(s.cfg), "fault": fault, "seconds": out["seconds"], "steps": out["steps"],
               "train_data": {"file": str(train_file), "read": len(s.pairs), "truncated": len(s.truncated),
                              "refused": [], "blank_lines": 0},
               "tokens_forward": out["tokens_forward"], "tokens_backward": out["tokens_backward"],
               "val_implicit_reward_accuracy": final["eval/rewards/accuracies"], "final": final,
               "history": out["history"]}
    save_checkpoint(out_dir / f"{out_name}.pt", s.policy.state_dict(),
                    {"stage": "dpo", "model": asdict(s.policy.config), "train": asdict(s.cfg), "fault": fault,
                     "sft": str(sft_path), "data": str(train_file)})
    write_json(out_dir / f"{out_name}_metrics.json", metrics)
    return metrics


def dpo_with_fault(run, fault: str, train_file=None, val_file=None, **overrides) -> dict:
    """`python -m minidpo dpo --inject FAULT`: the dpo stage of the run folder, with that bug on."""
    cfg = run.settings(DPOConfig, **overrides)
    inputs = run.inputs("dpo", train_data=train_file, val_data=val_file)
    run.cached("dpo", {**cfg.key(), "fault": fault}, inputs, lambda: train_with_fault(
        cfg, run.tok, inputs["sft"], inputs["train_data"], inputs["val_data"], run.out, run.device, run.dtype,
        run.quiet, fault=fault), code="studies.museum")
    return read_json(run.path("dpo_metrics.json"))


def run_museum(run) -> dict:
    """Every fault of FAULTS, and the clean run, trained the same way on each seed's pairs: the
    metrics learners watch at the start and the end, the samples' gold reward, fluency and length
    on the held-out films, which of the doctor's checks fail, and what each fault costs in gold
    against the clean run of the same seed (paired by seed: `museum_costs`)."""
    result = run.study("museum", lambda: _museum(run))
    print_museum(result["rows"])  # also when reused: the tables are what the command is for
    print_costs(result)
    return result


def museum_folder(run) -> Path:
    return run.out / "museum"


ROW_KEYS = ("loss", "rewards/chosen", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


def seed_data(run, seed: int) -> tuple[Path, Path]:
    """(training pairs, held-out pairs) of `seed`: the run's own for the run's seed, else that seed's
    pairs of the frontier machinery (`frontier.data_unit`, shared with the Figure 2 study, the loss
    bench and lesson 18's study)."""
    if seed == run.seed:
        return run.path("prefs_train.jsonl"), run.path("prefs_val.jsonl")
    from ..preferences import PrefsConfig
    from .units import data_unit
    data, _ = data_unit(run, "bt", run.settings(PrefsConfig).train_repeats, seed)
    return data.train, data.val


def unit_file(run, fault: str | None, seed: int) -> Path:
    name = fault or "clean"
    return museum_folder(run) / (f"{name}.json" if seed == run.seed else f"{name}_s{seed}.json")


def museum_unit(run, fault: str | None, seed: int | None = None) -> tuple[dict, float | None]:
    """One row of the museum: the DPO run with `fault` switched on (None: the clean run) on `seed`'s
    pairs with DPO's seed `seed` (default: the run's seed), what the doctor says about its setup, its
    whole logged history (train batches and held-out pairs), and its held-out samples scored. Cached
    per fault and seed, so a lesson that runs a few faults and the full museum share them. Returns
    (the row, seconds it took or None when reused).

    Every run trains with the pipeline's DPO settings, so the clean run of the run's seed IS the
    pipeline's dpo stage (same settings, data and seed): it is read from there, not trained again."""
    seed = run.seed if seed is None else seed
    folder, cfg = museum_folder(run), run.settings(DPOConfig, seed=seed)
    train_file, val_file = seed_data(run, seed)
    name = fault or "clean"
    tag = name if seed == run.seed else f"{name}_s{seed}"
    from_stage = fault is None and seed == run.seed
    if from_stage:
        ensure(run, "dpo", "eval_dpo")

    def go():
        s = build(run.tok, run.path("sft.pt"), train_file, cfg, run.device)
        checks = diagnose(inject(s, fault) if fault else s)
        if from_stage:
            m, ev = read_json(run.path("dpo_metrics.json")), summary_row(read_json(run.path("eval_dpo.json")))
        else:
            trainer = train_with_fault if fault else train_dpo
            m = trainer(cfg, run.tok, run.path("sft.pt"), train_file, val_file, folder, run.device, run.dtype,
                        quiet=True, out_name=f"{tag}_policy", **({"fault": fault} if fault else {}))
            ev = summary_row(run.evaluate(run.load_policy(folder / f"{tag}_policy.pt")))
        rows = [r for r in m["history"] if "loss" in r]
        write_json(unit_file(run, fault, seed), {
            "fault": fault, "seed": seed, "first": {k: rows[0][k] for k in ROW_KEYS},
            "last": {k: rows[-1][k] for k in ROW_KEYS}, "eval": ev, "failed_checks": [c.name for c in checks if not c.ok],
            "checks": [c.line() for c in checks], "history": m["history"]})
        for f in folder.glob(f"{tag}_policy*"):  # evaluated: only the numbers stay
            f.unlink()
    inputs = {**run.inputs("dpo"), "train_data": train_file, "val_data": val_file}
    if from_stage:
        inputs.update(dpo_metrics=run.path("dpo_metrics.json"), dpo_eval=run.path("eval_dpo.json"))
    computed = run.cached(f"museum_{tag}", {**cfg.key(), "fault": fault}, inputs, go,
                          outputs=[unit_file(run, fault, seed)], code="studies.museum", folder=folder, announce=False)
    seconds = read_json(folder / "provenance" / f"museum_{tag}.json")["seconds"] if computed else None
    return read_json(unit_file(run, fault, seed)), seconds


SEED_KEYS = ("gold_reward", "fluency", "length", "kl_to_ref")  # what the museum keeps of each seed's run
SEEDS, FAST_SEEDS = 5, 2  # a bug's cost varies from seed to seed; with 3 seeds the 95 % interval is
                          # t(2) = 4.30 standard errors wide each side, with 5 seeds t(4) = 2.78


def museum_seeds(run) -> list[int]:
    return [run.seed + i for i in range(FAST_SEEDS if run.fast else SEEDS)]


def _museum(run) -> None:
    seeds = museum_seeds(run)
    names = [None, *FAULTS]
    progress = StudyProgress("museum", ["fault"] * (len(names) * len(seeds)))
    units = {}
    for seed in seeds:
        for fault in names:
            units[(fault or "clean", seed)], seconds = museum_unit(run, fault, seed)
            progress.unit_done("fault", f"{fault or 'clean'} seed {seed}", seconds)
    rows = {name: units[(name, run.seed)] for name in (n or "clean" for n in names)}
    for r in rows.values():
        r["gold_cost"] = rows["clean"]["eval"]["gold_reward"] - r["eval"]["gold_reward"]
    by_seed = {name: [{**{k: units[(name, s)]["eval"][k] for k in SEED_KEYS},
                       "failed_checks": units[(name, s)]["failed_checks"],
                       "curves_fail": [c.name for c in read_curves(units[(name, s)]["history"]) if not c.ok]}
                      for s in seeds] for name in rows}
    write_json(museum_folder(run) / "museum.json", {
        "seeds": seeds, "rows": rows, "by_seed": by_seed, "costs": museum_costs(by_seed),
        "fluency_costs": museum_costs(by_seed, "fluency"),
        "clean_spread": dict(zip(("mean", "std"), mean_std([x["gold_reward"] for x in by_seed["clean"]]))),
        "faults": {k: vars(v) for k, v in FAULTS.items()}})


def museum_costs(by_seed: dict, key: str = "gold_reward") -> dict:
    """{fault: what it costs in `key`}: clean − fault, paired by seed (the same pairs, DPO seed and
    evaluation samples on both sides), its mean, 95 % interval and verdict ("above": a cost the
    seeds can tell from zero, "below": a measurable gain, "no measurable difference")."""
    clean = [x[key] for x in by_seed["clean"]]
    return {name: paired(clean, [x[key] for x in runs]).as_dict()
            for name, runs in by_seed.items() if name != "clean"}


def print_museum(rows: dict) -> None:
    print(f"{'fault':24s} | loss first->last | logps/chosen  | gold   | cost  | fluency | length | doctor says")
    for name, r in rows.items():
        f, l, e = r["first"], r["last"], r["eval"]
        print(f"{name:24s} | {f['loss']:.3f} -> {l['loss']:.3f} | {f['logps/chosen']:+6.1f}->{l['logps/chosen']:+6.1f} | "
              f"{e['gold_reward']:+.3f} | {r['gold_cost']:+.2f} | {e['fluency']:.3f}   | {e['length']:5.1f}  | "
              + (", ".join(r["failed_checks"]) or "all checks pass"))


def print_costs(result: dict) -> None:
    """The cost of each fault over the seeds, in gold and in fluency, with the seed noise it must be
    told from."""
    seeds, spread = result["seeds"], result["clean_spread"]
    print(f"the cost of each fault = clean − fault, paired by seed ({len(seeds)} seeds); the clean run's gold over "
          f"the seeds: {spread['mean']:+.3f} ± {spread['std']:.3f} (the seed noise)")
    for name, d in result["costs"].items():
        gold = paired(d["gaps"], [0.0] * len(d["gaps"]))
        word = {"above": "a cost", "below": "a gain"}.get(d["verdict"], d["verdict"])
        line = f"  {name:24s} gold {gold.describe()}: {word}"
        fluency = result.get("fluency_costs", {}).get(name)
        if fluency:
            f = paired(fluency["gaps"], [0.0] * len(fluency["gaps"]))
            line += f" | fluency {f.mean:+.3f} ({f.low:+.3f} … {f.high:+.3f}): {f.verdict}"
        print(line)
