"""The numbers the README and docs/ quote, and their tables, from two committed sources:
data/headline.json (the pipeline's own run, `run --all`, and the loss bench: `extract`) and the
long studies' results, shipped as they are in data/studies/ (frontier.json with its points,
ablation.json: `studies`; lessons read the same files when no run of theirs holds the study).
`tables(headline, studies)` renders each table as markdown (the report's sections 12–14 use the same
renderers). Each table sits between `<!-- headline:NAME -->` and `<!-- /headline:NAME -->` in exactly
one of the markdown pages (README.md and docs/*.md; `pages`). CI has no run folder, so the tests
check the pages against the committed files: `python -m minidpo.tools.headline --out runs/default`
writes them from the run folder and rewrites the pages' tables; `--check` only compares.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..checkpoint import read_json

SCHEMA = 1
LABEL_NAMES = {"bt": "Bradley–Terry", "deterministic": "deterministic", "gold": "gold reward"}
PIPELINE_ROWS = (("sft", "SFT"), ("rlhf", "RLHF: reward model + REINFORCE"), ("dpo", "DPO"),
                 ("ppo", "RLHF: reward model + PPO"), ("grpo", "RLHF: reward model + GRPO"))
EVAL_KEYS = ("gold_reward", "gold_std", "win_rate_vs_sft", "ties_vs_sft", "kl_to_ref", "fluency", "unique_frac")


def _strip(table: dict, drop: tuple[str, ...]) -> dict:
    """{method: {kl: cell}} without the per-seed lists (the README shows mean, spread and n)."""
    return {m: {kl: {k: v for k, v in cell.items() if k not in drop} for kl, cell in row.items()}
            for m, row in table.items()}


def extract(folder) -> dict:
    """The README's numbers from run folder `folder`: a section per study found there."""
    folder = Path(folder)
    out: dict = {"schema": SCHEMA}
    config = folder / "run_config.json"
    if config.is_file():
        out["run"] = {k: read_json(config).get(k) for k in ("seed", "fast", "dtype")}
    if (folder / "summary.json").is_file():
        rows = {}
        for name, _ in PIPELINE_ROWS:
            f = folder / f"eval_{name}.json"
            if f.is_file():
                ev = read_json(f)
                rows[name] = {k: ev[k] for k in EVAL_KEYS if k in ev}
        out["results"] = rows
    study = folder / "frontier"
    if (study / "losses.json").is_file():
        r = read_json(study / "losses.json")
        keys = ("gold_reward", "win_rate_vs_sft", "kl_to_ref", "fluency", "logps_chosen_change")
        out["losses"] = {"seeds": r["seeds"], "epochs": r["epochs"], "matched_kl": r["matched_kl"], "order": r["order"],
                         "rows": {name: {**{k: x[k] for k in keys}, "at": _side(x["matched"].get(str(r["matched_kl"])))}
                                  for name, x in r["rows"].items()}}
    return out


def _side(c: dict | None) -> dict | None:
    """One method's matched-KL cell: mean, spread, seeds counted."""
    return {k: c[k] for k in ("gold_mean", "gold_std", "n")} if c else None


STUDIES = {"frontier": "frontier/frontier.json", "ablation": "frontier/ablation.json"}  # shipped in data/studies/
POINT_FIELDS = ("method", "labels", "repeats", "seed", "beta", "step", "of_steps", "samples", "of_samples",
                "gold_reward", "gold_std", "kl_to_ref", "fluency", "win_rate_vs_sft", "unique_frac", "entropy", "length")


def studies(folder) -> dict:
    """{name: result} of the long studies found in run folder `folder`, as shipped: the frontier with
    its points (each with the fields a reader needs, `POINT_FIELDS`) and the ablation as written."""
    folder, out = Path(folder), {}
    for name, path in STUDIES.items():
        if (folder / path).is_file():
            out[name] = read_json(folder / path)
    if "frontier" in out:
        f = out["frontier"]
        out["frontier"] = {**f, "points": [{k: p[k] for k in POINT_FIELDS if k in p} for p in f["points"]]}
    return out


# --- rendering -------------------------------------------------------------------------------------
def num(x: float, digits: int = 2, sign: bool = True) -> str:
    """A number as the README prints it (a true minus sign)."""
    return (f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}").replace("-", "−")


def cell(c: dict | None, n_seeds: int, mean: str = "gold_mean", std: str = "gold_std") -> str:
    """mean ± std over the seeds, '(n=k)' when not every seed counts."""
    if not c:
        return "-"
    return f"{num(c[mean])} ± {num(c[std], sign=False)}" + ("" if c["n"] == n_seeds else f" (n={c['n']})")


def diff_cell(c: dict | None, n_seeds: int) -> str:
    """A paired difference (`compare.Difference.as_dict`): its mean and 95 % interval, bold when the
    interval excludes 0; 'one seed' when there is no spread to judge by; '(n=k)' below n_seeds."""
    if not c:
        return "-"
    if c["n"] < 2:
        return f"{num(c['gap_mean'])} (one seed)"
    text = f"{num(c['gap_mean'])} ({num(c['low'])} … {num(c['high'])})"
    return (f"**{text}**" if c["verdict"] in ("above", "below") else text) + (
        "" if c["n"] == n_seeds else f" (n={c['n']})")


def describe_budget(b: dict) -> tuple[str, str]:
    """(grid, what one unit spends) of one method, in words."""
    keys = sorted({k for g in b["grid"] for k in g})
    grid = "; ".join(f"{'β' if k == 'beta' else k} ∈ {{{', '.join(f'{g[k]:g}' for g in b['grid'])}}}" for k in keys)
    if "steps" in b:
        spend = f"{b['samples_per_unit']:,} sampled responses ({b['steps']} steps × {b['samples_per_step']})"
    else:
        spend = (f"{b['epochs']} epoch{'s' if b['epochs'] != 1 else ''} over the pairs"
                 + (f", batches of {b['batch_size']}" if "batch_size" in b else "") + " (no sampling)")
    return grid or "-", spend


def run_budget(p: dict) -> str:
    """What one of the pipeline's runs spent: its samples, or its epochs over the pairs."""
    return f"{p['samples']:,} samples" if p["samples"] else f"{p['epochs']} epoch{'s' if p['epochs'] != 1 else ''}"


def results_table(h: dict) -> list[str]:
    rows = h["results"]
    out = ["| method | gold reward | win rate vs SFT | ties with SFT | KL to ref (nats) | fluency | unique responses |",
           "|---|---|---|---|---|---|---|"]
    for name, label in PIPELINE_ROWS:
        if name in rows:
            r = rows[name]
            win = "-" if name == "sft" else num(r["win_rate_vs_sft"], 3, False)
            ties = num(r["ties_vs_sft"], 3, False) if name != "sft" and "ties_vs_sft" in r else "-"
            out.append(f"| {label} | {num(r['gold_reward'], 3)} ± {num(r['gold_std'], 2, False)} | {win} | {ties} | "
                       f"{num(r['kl_to_ref'], 2, False)} | {num(r['fluency'], 3, False)} | {num(r['unique_frac'], 3, False)} |")
    return out


def budgets_table(budgets: dict) -> list[str]:
    out = ["| method | grid | one unit spends |", "|---|---|---|"]
    for b in budgets.values():
        grid, spend = describe_budget(b)
        out.append(f"| {b['label']} | {grid} | {spend} |")
    return out


def _by_labels(f: dict, part: str) -> list[tuple[str, str, dict]]:
    """(labels shown, method, row) of a frontier table; PPO-GT (gold reward) once, last."""
    rows, gold = [], []
    for labels, table in f[part].items():
        for method, row in table.items():
            if not row:
                continue
            if not f.get("budgets", {}).get(method, {}).get("uses_labels", True):
                if not gold:
                    gold.append(("gold", method, row))
                continue
            rows.append((labels, method, row))
    return rows + gold


def frontier_table(f: dict) -> list[str]:
    kls, n = f["kl_targets"], len(f["seeds"])
    out = ["| labels | method | " + " | ".join(f"KL {k:g}" for k in kls) + " |", "|---|---|" + "---|" * len(kls)]
    shown, last = set(), None
    for labels, method, row in _by_labels(f, "matched"):
        shown.add(method)
        out.append(f"| {LABEL_NAMES[labels] if labels != last else ''} | {f['methods'][method]} | "
                   + " | ".join(cell(row.get(str(k)), n) for k in kls) + " |")
        last = labels
    missing = [f["methods"][m] for m in f["methods"] if m not in shown]
    if missing:
        out += ["", "No entry (no seed's frontier reaches a matched KL): " + ", ".join(missing) + "."]
    return out


def paired_table(f: dict) -> list[str]:
    kls, n = f["kl_targets"], len(f["seeds"])
    out = ["| labels | DPO − method | " + " | ".join(f"KL {k:g}" for k in kls) + " |", "|---|---|" + "---|" * len(kls)]
    last, rows = None, _by_labels(f, "paired")
    for labels, method, row in rows:
        out.append(f"| {LABEL_NAMES[labels] if labels != last else ''} | DPO − {f['methods'][method]} | "
                   + " | ".join(diff_cell(row.get(str(k)), n) for k in kls) + " |")
        last = labels
    return out if rows else ["No matched KL is reached by DPO and another method in the same seed."]


def pipeline_table(f: dict) -> list[str]:
    """The pipeline's own single runs (one seed each, their own budgets) beside DPO's frontier in
    the same seed at the same KL."""
    from .compare import at_kl, frontier
    out = ["| the pipeline's run (seed 0, Bradley–Terry) | β | budget | KL | gold | DPO's frontier there, same seed |",
           "|---|---|---|---|---|---|"]
    sft = (0.0, f["sft"]["gold_reward"], f["sft"]["fluency"])
    for p in f.get("pipeline", {}).values():
        mine = [q for q in f["points"] if q["method"] == "dpo" and q["seed"] == p["seed"] and q["labels"] == p["labels"]]
        there = at_kl(frontier(mine, sft), p["kl_to_ref"]) if mine else None
        spend = run_budget(p) + ("" if p["samples"] else ", no sampling")
        out.append(f"| {p['label']} | {p['beta']:g} | {spend} | {num(p['kl_to_ref'], 2, False)} | "
                   f"{num(p['gold_reward'], 3)} | {num(there[0], 3) if there else 'beyond its last point'} |")
    return out


def ablation_table(a: dict) -> list[str]:
    kl, n = a["primary_kl"], len(a["seeds"])
    out = [f"| | change from the row above | DPO at KL {kl:g} | RL at KL {kl:g} | DPO − RL | the row's step |",
           "|---|---|---|---|---|---|"]
    for i, row in enumerate(a["rows"]):
        c = row["by_kl"].get(str(kl)) if kl is not None else None
        step = row.get("step", {}).get(str(kl)) if kl is not None else None
        if not c:
            out.append(f"| {i} | {row['change']} | - | {row['rl_label']}: - | not reached | - |")
            continue
        out.append(f"| {i} | {row['change']} | {cell(c['dpo'], n)} | {row['rl_label']} {cell(c['rl'], n)} | "
                   f"{diff_cell(c, n)} | {diff_cell(step, n) if step else ''} |")
    return out


def losses_table(h: dict) -> list[str]:
    kl, n = h["matched_kl"], len(h["seeds"])
    out = [f"| loss | gold at KL {kl} | final gold | win rate | KL | fluency | Δ log π(y_w) |", "|---|---|---|---|---|---|---|"]
    for name in h["order"]:
        r = h["rows"][name]
        final = r["gold_reward"]
        out.append(f"| {name} | {cell(r['at'], n)} | {num(final['mean'], 3)} ± {num(final['std'], 3, False)} | "
                   f"{num(r['win_rate_vs_sft']['mean'], 3, False)} | {num(r['kl_to_ref']['mean'], 2, False)} | "
                   f"{num(r['fluency']['mean'], 3, False)} | {num(r['logps_chosen_change']['mean'])} |")
    return out


def tables(h: dict, studies: dict | None = None) -> dict[str, str]:
    """{block name: markdown} for every table whose numbers the headline `h` or the `studies`
    ({"frontier": ..., "ablation": ...} as `studies` returns them) hold."""
    out, studies = {}, studies or {}
    if "results" in h:
        out["results"] = results_table(h)
    if "frontier" in studies:
        f = studies["frontier"]
        out.update({"frontier_budgets": budgets_table(f["budgets"]), "frontier": frontier_table(f),
                    "frontier_paired": paired_table(f)})
        if f.get("pipeline"):
            out["frontier_pipeline"] = pipeline_table(f)
    if "ablation" in studies:
        out["ablation"] = ablation_table(studies["ablation"])
    if "losses" in h:
        out["losses"] = losses_table(h["losses"])
    return {name: "\n".join(lines) for name, lines in out.items()}


# --- the README's blocks ---------------------------------------------------------------------------
BLOCK = re.compile(r"<!-- headline:(\w+) -->\n(.*?)\n?<!-- /headline:\1 -->", re.S)


def blocks(readme: str) -> dict[str, str]:
    """{name: text} of every headline block in a README."""
    return {m.group(1): m.group(2).strip("\n") for m in BLOCK.finditer(readme)}


def stale(readme: str, rendered: dict[str, str]) -> list[str]:
    """Names of the tables whose README block is missing or differs from `rendered`."""
    found = blocks(readme)
    return [name for name, text in rendered.items() if found.get(name) != text]


def sync(readme: str, rendered: dict[str, str]) -> str:
    """The README with every existing headline block replaced by its rendered table."""
    return BLOCK.sub(lambda m: (f"<!-- headline:{m.group(1)} -->\n{rendered[m.group(1)]}\n<!-- /headline:{m.group(1)} -->"
                                if m.group(1) in rendered else m.group(0)), readme)


# --- the pages that hold the blocks ----------------------------------------------------------------
def pages(root) -> list[Path]:
    """The markdown pages that may hold a headline block: README.md, then docs/*.md."""
    root = Path(root)
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def problems(texts: dict[str, str], rendered: dict[str, str]) -> list[str]:
    """One line per table of `rendered` that is not in exactly one block across `texts` ({page name:
    text}) or whose block differs from its rendering, naming the page: empty when all are fresh."""
    held = {name: [] for name in rendered}
    for page, text in texts.items():
        for m in BLOCK.finditer(text):
            if m.group(1) in held:
                held[m.group(1)].append((page, m.group(2).strip("\n")))
    out = []
    for name, found in held.items():
        if not found:
            out.append(f"table '{name}' has no <!-- headline:{name} --> block in {', '.join(texts) or 'any page'}")
        elif len(found) > 1:
            out.append(f"table '{name}' has {len(found)} blocks (in {', '.join(page for page, _ in found)}); keep one")
        elif found[0][1] != rendered[name]:
            out.append(f"{found[0][0]}: table '{name}' differs from the committed numbers")
    return out
