"""The doctor: every check passes on the clean setup and fails on the fault it is there to catch."""
import pytest

from minidpo.studies.doctor import NEEDS_GOLD, build, diagnose
from minidpo.studies.museum import FAULTS, inject
from minidpo.dpo import DPOConfig

CAUGHT_BY = {  # fault -> the checks that must fail on it (and none other may fail on the clean run)
    "pad-equals-eos": {"end-token-scored"},
    "dropout-on": {"ln2-at-step-0", "dropout-off"},
    "shared-reference": {"reference-frozen"},
    "swap-labels": {"labels-agree"},
    "merge-boundary": {"tokenized-apart"},
    "truncate-to-empty": {"no-empty-responses", "truncation"},
    "mean-logps-without-beta": {"log-prob-scale"},
}


@pytest.fixture(scope="module")
def setups(fast_run):
    run, _ = fast_run

    def make(fault):
        s = build(run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"), DPOConfig.fast(), max_pairs=48)
        return inject(s, fault) if fault else s
    return make


def test_every_fault_has_a_check_that_catches_it():
    assert set(CAUGHT_BY) == set(FAULTS)


def test_the_clean_setup_passes_every_check(setups):
    checks = diagnose(setups(None))
    assert [c.name for c in checks if not c.ok] == [], [c.line() for c in checks]
    assert len(checks) == 11 and all(c.verdict for c in checks)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_check_fails_on_its_fault(fault, setups):
    checks = diagnose(setups(fault))
    failed = {c.name for c in checks if not c.ok}
    assert CAUGHT_BY[fault] <= failed, [c.line() for c in checks]
    assert all(c.fix for c in checks if not c.ok)  # every failure says what to do
    if fault == "shared-reference":  # the doctor put the policy back after training it for the check
        s = setups(fault)
        assert s.reference is s.policy


def test_only_swapped_labels_hide_from_every_check_a_real_run_can_run(setups):
    """A real run has no gold reward: without the checks that need it, the doctor still flags every
    bug but one, swapped labels (lesson 20's answer)."""
    assert set(NEEDS_GOLD) == {"labels-agree"}
    seen_without_gold = {fault: {c.name for c in diagnose(setups(fault)) if not c.ok} - set(NEEDS_GOLD)
                         for fault in FAULTS}
    assert [f for f, left in seen_without_gold.items() if not left] == ["swap-labels"]


def test_the_shared_reference_keeps_the_loss_at_ln2_while_the_policy_runs_away(fast_run, tmp_path):
    """The classic symptom: with the policy as its own reference the logged loss never leaves ln 2
    and every reward stays 0, yet the log-probs move."""
    import math
    from minidpo.studies.museum import train_with_fault
    run, _ = fast_run
    m = train_with_fault(DPOConfig.fast(epochs=1), run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"),
                         run.path("prefs_val.jsonl"), tmp_path, quiet=True, out_name="shared", fault="shared-reference")
    steps = [r for r in m["history"] if "loss" in r]
    assert all(abs(r["loss"] - math.log(2)) < 1e-5 and abs(r["rewards/margins"]) < 1e-5 for r in steps)
    assert abs(steps[-1]["logps/chosen"] - steps[0]["logps/chosen"]) > 0.1 or \
        abs(steps[-1]["logps/rejected"] - steps[0]["logps/rejected"]) > 0.1
