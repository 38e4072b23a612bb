"""KTO's reference point z0 is the policy's log-ratio on MISMATCHED completions y′: completions of
other prompts, never the example's own pair partner (which KTO pushes down, so z0 would fall)."""
import json

from minidpo.preferences import encode_unpaired, mismatched_completions, read_unpaired
from minidpo.tokenizer import EXAMPLE_PREFS


def check_mismatch(examples, other, split_pairs=True):
    """Every y′ index: a real other example, from another prompt when the file has several, and
    (for pairs split in two: 2k chosen, 2k+1 rejected) never the pair partner."""
    prompts = [e["prompt"] for e in examples]
    several = len(set(prompts)) > 1
    assert len(other) == len(examples)
    for i, j in enumerate(other):
        assert j != i
        if split_pairs:
            assert j != i ^ 1, f"example {i}'s y′ is its own pair partner"
        if several:
            assert prompts[j] != prompts[i], f"example {i}'s y′ shares its prompt"


def test_the_shipped_file_gives_every_example_a_completion_of_another_film(tok):
    examples, report = read_unpaired(EXAMPLE_PREFS)
    assert report["split_from_pairs"] and len(examples) == 48 and len({e["prompt"] for e in examples}) == 3
    other = mismatched_completions([e["prompt"] for e in examples])
    check_mismatch(examples, other)
    assert sorted(other) == list(range(len(examples)))  # a permutation: every completion used once as y′
    rows, labels, enc = encode_unpaired(tok, examples, block_size=64)
    assert labels == [bool(e["label"]) for e in examples] and enc["encoded"] == 48
    for i, (example_row, mismatch_row) in enumerate(rows):
        response = lambda r: [t for t, m in zip(*r) if m]
        prompt = lambda r: [t for t, m in zip(*r) if not m]
        assert response(example_row) == tok.encode_response(examples[i]["completion"])
        assert response(mismatch_row) == tok.encode_response(examples[other[i]]["completion"])
        assert prompt(mismatch_row) == tok.encode_prompt(examples[i]["prompt"])  # y′ under x's own prompt


def _split(tmp_path, prompts):
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"prompt": p, "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
                         for i, p in enumerate(prompts)))
    return read_unpaired(f)[0]


def test_files_of_every_shape_never_mismatch_within_a_prompt(tmp_path):
    # films grouped in runs (as generated files are), unequal group sizes
    for prompts in (["Review: A"] * 5 + ["Review: B"] * 3 + ["Review: C"] * 4,
                    ["Review: A", "Review: B"] * 4,
                    ["Review: A"] * 3 + ["Review: B"]):       # one film holds 3/4 of the examples
        examples = _split(tmp_path, prompts)
        check_mismatch(examples, mismatched_completions([e["prompt"] for e in examples]))
    one = _split(tmp_path, ["Review: A"] * 3)                  # one film: no other prompt exists
    check_mismatch(one, mismatched_completions([e["prompt"] for e in one]))
