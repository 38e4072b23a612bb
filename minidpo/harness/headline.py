"""The numbers the README quotes, in one small JSON, and the README's tables made from it.

`extract(folder)` keeps, from a run folder's own JSON (summary.json and eval_*.json of `run --all`,
frontier/frontier.json, ablation.json, losses.json, whichever exist), exactly what the README's
tables show; `tables(headline)` renders each table as markdown (the report's sections 12–14 use
the same renderers). Each table sits between `<!-- headline:NAME -->` and `<!-- /headline:NAME -->`
in exactly one of the markdown pages (README.md and docs/*.md; `pages`). A committed copy,
data/headline.json, is what the tests check the pages against, since CI has no run folder:
`python -m minidpo.tools.headline --out runs/default` writes it from the run folder and rewrites the
pages' tables; `--check` only compares.
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
    if (study / "frontier.json").is_file():
        r = read_json(study / "frontier.json")
        out["frontier"] = {"methods": r["methods"], "seeds": r["seeds"], "kl_targets": r["kl_targets"],
                           "budgets": r.get("budgets", {}),
                           "matched": {lab: _strip(t, ("values",)) for lab, t in r["matched"].items()},
                           "paired": {lab: _strip(t, ("gaps",)) for lab, t in r.get("paired", {}).items()}}
    if (study / "ablation.json").is_file():
        r = read_json(study / "ablation.json")
        out["ablation"] = {"seeds": r["seeds"], "primary_kl": r["primary_kl"], "budgets": r.get("budgets", {}),
                           "rows": [{"change": row["change"], "rl_label": row["rl_label"],
                                     "at": _ablation_cell(row, r["primary_kl"])} for row in r["rows"]]}
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


def _ablation_cell(row: dict, kl) -> dict | None:
    c = row["by_kl"].get(str(kl)) if kl is not None else None
    if not c:
        return None
    return {"dpo": _side(c["dpo"]), "rl": _side(c["rl"]),
            **{k: c[k] for k in ("gap_mean", "gap_std", "n", "beyond_spread")}}


# --- rendering -------------------------------------------------------------------------------------
def num(x: float, digits: int = 2, sign: bool = True) -> str:
    """A number as the README prints it (a true minus sign)."""
    return (f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}").replace("-", "−")


def cell(c: dict | None, n_seeds: int, mean: str = "gold_mean", std: str = "gold_std", mark: bool = False) -> str:
    """mean ± std, ' *' when beyond the spread (if `mark`), '(n=k)' when not every seed counts."""
    if not c:
        return "-"
    text = f"{num(c[mean])} ± {num(c[std], sign=False)}"
    if mark and c.get("beyond_spread"):
        text = f"**{text}**"
    return text + ("" if c["n"] == n_seeds else f" (n={c['n']})")


def describe_budget(b: dict) -> tuple[str, str]:
    """(grid, what one unit spends) of one method, in words."""
    keys = sorted({k for g in b["grid"] for k in g})
    grid = "; ".join(f"{'β' if k == 'beta' else k} ∈ {{{', '.join(f'{g[k]:g}' for g in b['grid'])}}}" for k in keys)
    if "steps" in b:
        spend = f"{b['samples_per_unit']} sampled responses ({b['steps']} steps × {b['samples_per_step']})"
    else:
        spend = f"{b['epochs']} epoch{'s' if b['epochs'] != 1 else ''} over the pairs (no sampling)"
    return grid or "-", spend


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


def _by_labels(h: dict, part: str) -> list[tuple[str, str, dict]]:
    """(labels shown, method, row) of a frontier table; PPO-GT (gold reward) once, last."""
    rows, gold = [], []
    for labels, table in h[part].items():
        for method, row in table.items():
            if not row:
                continue
            if not h.get("budgets", {}).get(method, {}).get("uses_labels", True):
                if not gold:
                    gold.append(("gold", method, row))
                continue
            rows.append((labels, method, row))
    return rows + gold


def frontier_table(h: dict) -> list[str]:
    kls, n = h["kl_targets"], len(h["seeds"])
    out = ["| labels | method | " + " | ".join(f"KL {k:g}" for k in kls) + " |", "|---|---|" + "---|" * len(kls)]
    shown, last = set(), None
    for labels, method, row in _by_labels(h, "matched"):
        shown.add(method)
        out.append(f"| {LABEL_NAMES[labels] if labels != last else ''} | {h['methods'][method]} | "
                   + " | ".join(cell(row.get(str(k)), n) for k in kls) + " |")
        last = labels
    missing = [h["methods"][m] for m in h["methods"] if m not in shown]
    if missing:
        out += ["", "No entry (no seed's frontier reaches a matched KL): " + ", ".join(missing) + "."]
    return out


def paired_table(h: dict) -> list[str]:
    kls, n = h["kl_targets"], len(h["seeds"])
    out = ["| labels | DPO − method | " + " | ".join(f"KL {k:g}" for k in kls) + " |", "|---|---|" + "---|" * len(kls)]
    last, rows = None, _by_labels(h, "paired")
    for labels, method, row in rows:
        out.append(f"| {LABEL_NAMES[labels] if labels != last else ''} | DPO − {h['methods'][method]} | "
                   + " | ".join(cell(row.get(str(k)), n, "gap_mean", "gap_std", mark=True) for k in kls) + " |")
        last = labels
    return out if rows else ["No matched KL is reached by DPO and another method in the same seed."]


def ablation_table(h: dict) -> list[str]:
    n = len(h["seeds"])
    out = ["| change from the row above | DPO | RL | DPO − RL | |", "|---|---|---|---|---|"]
    for row in h["rows"]:
        c = row["at"]
        if not c:
            out.append(f"| {row['change']} | - | {row['rl_label']}: - | - | not reached |")
            continue
        verdict = "beyond the spread" if c["beyond_spread"] else "within the spread"
        out.append(f"| {row['change']} | {cell(c['dpo'], n)} | {row['rl_label']} {cell(c['rl'], n)} | "
                   f"{cell(c, n, 'gap_mean', 'gap_std', mark=True)} | {verdict} |")
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


def tables(h: dict) -> dict[str, str]:
    """{block name: markdown} for every README table the headline has the numbers of."""
    out = {}
    if "results" in h:
        out["results"] = results_table(h)
    if "frontier" in h:
        f = h["frontier"]
        out.update({"frontier_budgets": budgets_table(f["budgets"]), "frontier": frontier_table(f),
                    "frontier_paired": paired_table(f)})
    if "ablation" in h:
        out["ablation"] = ablation_table(h["ablation"])
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


def committed_study(headline: dict) -> tuple[dict, dict]:
    """(frontier, ablation) of a headline (data/headline.json) in the layout the study itself writes,
    as far as the headline keeps it: the matched and paired tables, not the points along training.
    So `frontier.print_matched`, `ablation.print_ablation` and `plots.matched_figure` read it, and a
    lesson shows the measured study where it has not run."""
    frontier = {**headline["frontier"], "sft": headline["results"]["sft"]}
    a = headline["ablation"]
    ablation = {**a, "rows": [{**r, "by_kl": {str(a["primary_kl"]): r["at"]}} for r in a["rows"]]}
    return frontier, ablation
