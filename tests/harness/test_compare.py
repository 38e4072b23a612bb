"""How methods are compared: the frontier as a hull that never falls when a run is added, the
paired difference's Student-t interval and its verdict, and the lessons' claims."""
import math
import random

import pytest

from minidpo.harness import compare as C

SFT = (0.0, 0.0, 0.9)


def test_the_student_t_quantiles_are_the_tables():
    for df, t in ((1, 12.7062), (2, 4.30265), (3, 3.18245), (4, 2.77645), (10, 2.22814), (30, 2.04227)):
        assert C.t_quantile(df) == pytest.approx(t, abs=2e-4)


def test_adding_a_point_never_lowers_the_frontier_nor_shortens_it():
    """The property a frontier must have (mixing two policies reaches the chord between them): on
    random clouds, every reading after adding a point is at least the reading before."""
    rng = random.Random(0)
    grid = [i * 0.05 for i in range(121)]
    for _ in range(300):
        points = [(rng.uniform(0.01, 6), rng.gauss(0.5, 0.8), rng.random()) for _ in range(rng.randint(1, 8))]
        before = C.frontier(points, SFT)
        after = C.frontier(points + [(rng.uniform(0.01, 6), rng.gauss(0.5, 0.8), rng.random())], SFT)
        for kl in grid:
            b, a = C.at_kl(before, kl), C.at_kl(after, kl)
            if b is not None:
                assert a is not None and a[0] >= b[0] - 1e-12
        # concave and non-decreasing: slopes fall and never go below 0
        slopes = [(g1 - g0) / (k1 - k0) for (k0, g0, _), (k1, g1, _) in zip(after, after[1:])]
        assert all(s >= -1e-12 for s in slopes) and all(x >= y - 1e-12 for x, y in zip(slopes, slopes[1:]))
        # every point lies on or under it
        for kl, gold, _ in points:
            assert C.at_kl(after, kl)[0] >= gold - 1e-12


def test_a_running_maximum_can_fall_where_the_hull_cannot():
    """The case that made the envelope wrong: DPO at two β on one seed. The envelope over both β
    read at KL 1 gave less than β = 0.5 alone; the hull over both reads at least as much."""
    beta05 = [(0.6, 0.30, 0.9), (1.2, 0.62, 0.9)]
    beta01 = [(0.9, 0.33, 0.9), (2.5, 0.70, 0.9)]
    alone = C.at_kl(C.frontier(beta05, SFT), 1.0)[0]
    both = C.at_kl(C.frontier(beta05 + beta01, SFT), 1.0)[0]
    assert both >= alone

    def running_max(points):  # the old envelope: each point above every point at lower KL
        out = [SFT]
        for p in sorted(points):
            if p[1] > out[-1][1]:
                out.append(p)
        return out
    assert C.at_kl(running_max(beta05 + beta01), 1.0)[0] < C.at_kl(running_max(beta05), 1.0)[0]


def test_the_paired_verdict_reads_the_interval():
    above = C.paired([1.0, 1.2, 1.1], [0.5, 0.6, 0.55])
    assert above.verdict == "above" and above.low > 0 and above.n == 3
    assert above.mean == pytest.approx(0.55) and above.diffs == pytest.approx([0.5, 0.6, 0.55])
    assert C.paired([0.5, 0.6, 0.55], [1.0, 1.2, 1.1]).verdict == "below"
    noisy = C.paired([1.0, 0.2, 0.9], [0.5, 0.6, 0.4])  # +0.5, −0.4, +0.5: the interval covers 0
    assert noisy.verdict == "no measurable difference" and noisy.low < 0 < noisy.high
    one = C.paired([1.0], [0.0])
    assert one.verdict == "one seed" and math.isnan(one.low) and "one seed" in one.describe()
    assert C.paired([1.0, None, 2.0], [0.0, 5.0, 1.0]).diffs == [1.0, 1.0]  # a missing side drops the seed
    with pytest.raises(ValueError, match="no seed"):
        C.paired([None], [1.0])


def test_a_claim_prints_its_numbers_and_a_mark_and_never_raises(capsys):
    from minidpo.harness.tutorial import CLAIMS, claim, claim_paired
    CLAIMS.clear()
    assert claim("the loss falls", 0.3 < 0.69, first=0.6931, last=0.3) is True
    assert claim("the margin shrinks", False, margin=1.5) is False
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✓ the loss falls  [first = 0.6931, last = 0.3]"
    assert out[1] == "✗ the margin shrinks  [margin = 1.5]  — does not hold with these settings"
    d = claim_paired("gold at KL 1", "DPO", [1.0, 0.2, 0.9], "PPO", [0.5, 0.6, 0.4], ">")
    assert d.verdict == "no measurable difference" and CLAIMS[-1]["holds"] is False
    assert claim_paired("gold at KL 1", "DPO", [1.0, 0.2, 0.9], "PPO", [0.5, 0.6, 0.4], "=").verdict == d.verdict
    assert CLAIMS[-1]["holds"] is True and [c["holds"] for c in CLAIMS] == [True, False, False, True]
    assert not claim_paired("gold", "DPO", [1.0], "PPO", [0.0], ">").verdict == "above"  # one seed never holds
    assert CLAIMS[-1]["holds"] is False


def test_a_lesson_finds_a_study_in_its_folder_then_runs_default_then_the_committed_one(tmp_path, monkeypatch):
    import json
    from minidpo import tokenizer
    from minidpo.harness import tutorial as T
    from minidpo.harness.runfolder import Run
    shipped = tmp_path / "data"
    (shipped / "studies").mkdir(parents=True)
    monkeypatch.setattr(tokenizer, "shipped_file", lambda name: shipped / name)
    monkeypatch.chdir(tmp_path)
    run = Run.create(tmp_path / "lesson", seed=0, fast=True, device="cpu")
    assert T.saved_study(run, "overoptimisation/overoptimisation.json") is None
    (shipped / "studies" / "overoptimisation.json").write_text(json.dumps({"from": "committed"}))
    found = T.saved_study(run, "overoptimisation/overoptimisation.json")
    assert found == shipped / "studies" / "overoptimisation.json" and "committed with minidpo" in T.where_from(run, found)
    result, said = T.study_result(run, False, "overoptimisation/overoptimisation.json", lambda: None)
    assert result == {"from": "committed"} and "data/studies/overoptimisation.json" in said
    own = run.path("overoptimisation/overoptimisation.json")
    own.parent.mkdir(parents=True)
    own.write_text(json.dumps({"from": "own"}))
    assert T.saved_study(run, "overoptimisation/overoptimisation.json") == own  # the lesson's own run first
    assert T.study_result(run, False, "overoptimisation/overoptimisation.json", lambda: None)[0] == {"from": "own"}
