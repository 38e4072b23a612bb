"""The measured tables of the README and docs/ come from the committed numbers (`harness.headline`):
data/headline.json (the pipeline's run, the loss bench) and the long studies' own results shipped in
data/studies/, rendered as markdown and checked against the one page (README.md or docs/*.md) that
holds each table. CI has no run folder, so the pages are checked against the committed files."""
import json
from pathlib import Path

import pytest

from minidpo.checkpoint import read_json, write_json
from minidpo.harness import headline

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # the tiny Figure 2 and ablation, end to end (the slow tier)
def test_the_headline_keeps_the_fast_studies_numbers_and_renders_the_readme_tables(fast_studies):
    out = fast_studies.out
    h, studies = headline.extract(out), headline.studies(out)
    assert "results" in h and h["schema"] == headline.SCHEMA and set(studies) == {"frontier", "ablation"}
    json.dumps(h), json.dumps(studies)  # plain JSON
    frontier = read_json(out / "frontier" / "frontier.json")
    shipped = studies["frontier"]  # the study as written, each point with the fields a reader needs
    assert {k: v for k, v in shipped.items() if k != "points"} == {k: v for k, v in frontier.items() if k != "points"}
    assert [{k: p[k] for k in headline.POINT_FIELDS if k in p} for p in frontier["points"]] == shipped["points"]
    assert studies["ablation"] == read_json(out / "frontier" / "ablation.json")
    dpo = read_json(out / "eval_dpo.json")
    assert h["results"]["dpo"]["win_rate_vs_sft"] == dpo["win_rate_vs_sft"] and "ties_vs_sft" in h["results"]["dpo"]
    rendered = headline.tables(h, studies)
    assert set(rendered) == {"results", "frontier_budgets", "frontier", "frontier_paired", "frontier_pipeline", "ablation"}
    assert "| REINFORCE | β ∈ {0.05} | 256 sampled responses (8 steps × 32) |" in rendered["frontier_budgets"]
    assert "| PPO | β ∈ {0.05} | 256 sampled responses (8 steps × 32) |" in rendered["frontier_budgets"]
    assert rendered["results"].count("\n") == 2 + 3     # header, rule, SFT, REINFORCE, DPO, PPO (the figure's)
    assert len(rendered["ablation"].splitlines()) == 2 + len(studies["ablation"]["rows"])
    n_seeds = len(frontier["seeds"])
    for labels, table in frontier["matched"].items():  # a mean over fewer seeds says so
        for method, row in table.items():
            for c in row.values():
                text = headline.cell(c, n_seeds)
                assert text.startswith(headline.num(c["gold_mean"])) and (f"(n={c['n']})" in text) == (c["n"] < n_seeds)
    # a README with a block per table: synced, it matches; one changed digit and the check names it
    readme = "intro\n" + "".join(f"<!-- headline:{name} -->\nold\n<!-- /headline:{name} -->\ntext\n" for name in rendered)
    assert set(headline.stale(readme, rendered)) == set(rendered)
    synced = headline.sync(readme, rendered)
    assert headline.stale(synced, rendered) == [] and synced.startswith("intro\n") and synced.count("text\n") == len(rendered)
    edited = synced.replace("256 sampled", "255 sampled", 1)
    assert headline.stale(edited, rendered) == ["frontier_budgets"]
    assert headline.stale(synced.replace("<!-- headline:ablation -->", ""), rendered) == ["ablation"]


def test_a_paired_difference_reads_as_its_interval_and_says_when_it_is_one_seed():
    from minidpo.harness.compare import paired
    three = paired([1.0, 1.2, 1.1], [0.5, 0.6, 0.7]).as_dict()
    assert headline.diff_cell(three, 3) == f"**+0.50 ({headline.num(three['low'])} … {headline.num(three['high'])})**"
    below = paired([0.5, 0.6, 0.7], [1.0, 1.2, 1.1]).as_dict()
    assert below["verdict"] == "below" and headline.diff_cell(below, 3).startswith("**−0.50 (")
    covers = paired([1.0, 0.2, 0.6], [0.5, 0.6, 0.7]).as_dict()
    assert covers["verdict"] == "no measurable difference" and not headline.diff_cell(covers, 3).startswith("**")
    assert headline.diff_cell(paired([1.0, 1.2], [0.5, 0.6]).as_dict(), 3).endswith("(n=2)")
    assert headline.diff_cell(paired([1.0], [0.5]).as_dict(), 3) == "+0.50 (one seed)"


def test_the_loss_bench_table_marks_seeds_that_do_not_reach_the_kl(tmp_path):
    stat = lambda m, s=0.0: {"mean": m, "std": s}
    row = lambda gold, at: {"gold_reward": stat(gold, 0.05), "win_rate_vs_sft": stat(0.7), "kl_to_ref": stat(1.0),
                            "fluency": stat(0.9), "logps_chosen_change": stat(-0.4), "unique_frac": stat(1.0),
                            "matched": at}
    write_json(tmp_path / "frontier" / "losses.json", {
        "seeds": [0, 1, 2], "epochs": 1, "matched_kl": 0.5, "order": ["sigmoid", "kto", "dpop"],
        "rows": {"sigmoid": row(0.9, {"0.5": {"gold_mean": 0.56, "gold_std": 0.12, "n": 3, "values": [1, 2, 3]}}),
                 "kto": row(0.4, {"0.5": {"gold_mean": -0.25, "gold_std": 0.1, "n": 2, "values": [1, 2]}}),
                 "dpop": row(0.1, {})}})
    lines = headline.tables(headline.extract(tmp_path))["losses"].splitlines()
    assert lines[2] == "| sigmoid | +0.56 ± 0.12 | +0.900 ± 0.050 | 0.700 | 1.00 | 0.900 | −0.40 |"
    assert lines[3].startswith("| kto | −0.25 ± 0.10 (n=2) |") and lines[4].startswith("| dpop | - |")


def test_the_pages_tables_match_the_committed_numbers():
    from minidpo.tools.headline import committed_studies
    committed = ROOT / "data" / "headline.json"
    if not committed.is_file():
        pytest.skip("no data/headline.json yet: after the long studies, `python -m minidpo.tools.headline "
                    "--out runs/default` writes it and the README's tables")
    numbers, studies = json.loads(committed.read_text()), committed_studies()
    assert numbers["schema"] == headline.SCHEMA and numbers["run"]["fast"] is False  # never a smoke run's
    assert set(studies) == {"frontier", "ablation"} and "frontier" not in numbers  # one source for each number
    rendered = headline.tables(numbers, studies)
    texts = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in headline.pages(ROOT)}
    assert "README.md" in texts and any(name.startswith("docs/") for name in texts)
    bad = headline.problems(texts, rendered)
    assert bad == [], ("\n".join(bad) + "\n(the pages' tables against data/headline.json and data/studies/: run "
                       "`python -m minidpo.tools.headline`)")


def test_each_table_is_in_exactly_one_page_and_a_stale_one_is_named_with_its_page():
    rendered = {"results": "| a |\n|---|\n| 1 |", "losses": "| b |\n|---|\n| 2 |"}
    block = lambda name, text: f"<!-- headline:{name} -->\n{text}\n<!-- /headline:{name} -->\n"
    texts = {"README.md": "# x\n" + block("results", rendered["results"]),
             "docs/loss-bench.md": "# y\n" + block("losses", rendered["losses"])}
    assert headline.problems(texts, rendered) == []
    stale = {**texts, "docs/loss-bench.md": "# y\n" + block("losses", "| b |\n|---|\n| 3 |")}
    assert headline.problems(stale, rendered) == ["docs/loss-bench.md: table 'losses' differs from the committed numbers"]
    twice = {**texts, "docs/other.md": block("results", rendered["results"])}
    assert headline.problems(twice, rendered) == ["table 'results' has 2 blocks (in README.md, docs/other.md); keep one"]
    gone = {**texts, "docs/loss-bench.md": "# y\n"}
    assert headline.problems(gone, rendered) == [
        "table 'losses' has no <!-- headline:losses --> block in README.md, docs/loss-bench.md"]
    assert headline.sync(stale["docs/loss-bench.md"], rendered) == texts["docs/loss-bench.md"]


def test_the_tool_finds_each_table_in_its_page(capsys):
    from minidpo.tools import headline as tool
    if not tool.COMMITTED.is_file():
        pytest.skip("no data/headline.json yet")
    assert tool.main(["--check"]) == 0, capsys.readouterr().out


def test_the_committed_studies_are_full_runs_a_lesson_can_read(capsys):
    """data/studies/ holds the full Figure 2 study (with its points, small enough to ship) and the
    ablation, on three seeds, never a smoke run's; the study's own printers and figures read them."""
    from minidpo.harness import plots
    from minidpo.harness.tutorial import shipped_study
    from minidpo.studies.ablation import print_ablation
    from minidpo.studies.frontier import print_matched
    found = {name: shipped_study(f"frontier/{name}.json") for name in ("frontier", "ablation")}
    if None in found.values():
        pytest.skip("no data/studies/ yet")
    assert found["frontier"].stat().st_size < 300_000
    frontier, ablation = read_json(found["frontier"]), read_json(found["ablation"])
    assert frontier["seeds"] == ablation["seeds"] == [0, 1, 2] and len(frontier["points"]) > 200
    assert frontier["budgets"]["reinforce"]["samples_per_unit"] == 2560 and set(frontier["pipeline"]) == {"rlhf", "ppo", "dpo"}
    assert [r["rl_samples"] for r in ablation["rows"]] == [2560] + [9600] * 3
    print_matched(frontier)
    print_ablation(ablation)
    out = capsys.readouterr().out
    dpo_at_1 = frontier["matched"]["bt"]["dpo"]["1.0"]
    assert f"{headline.num(dpo_at_1['gold_mean'])} ± {headline.num(dpo_at_1['gold_std'], sign=False)}" in out
    first = ablation["rows"][0]["by_kl"][str(ablation["primary_kl"])]
    assert f"DPO − RL {first['gap_mean']:+.3f} (95 % interval {first['low']:+.3f} … {first['high']:+.3f}, 3 seeds)" in out
    assert len(plots.frontier_figure(frontier).axes) == len(frontier["labels"])
