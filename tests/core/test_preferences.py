import json
import random

import pytest

from minidpo.preferences import (PreferenceFileError, encode_pair, label_pair, read_preferences,
                                 write_preferences)

GOOD = {"prompt": "Review: The Silent Harbor", "chosen": "I loved this film.", "rejected": "I hated this film."}


def write_lines(path, lines):
    path.write_bytes(b"\n".join(l if isinstance(l, bytes) else l.encode() for l in lines) + b"\n")
    return path


@pytest.mark.parametrize("bad, message", [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (json.dumps({"prompt": "x", "chosen": "a"}).encode(), "missing key 'rejected'"),
    (json.dumps({"prompt": "x", "chosen": 3, "rejected": "b"}).encode(), "'chosen' must be a string"),
    (json.dumps({"prompt": "x", "chosen": " ", "rejected": "b"}).encode(), "'chosen' is empty"),
    (json.dumps({"prompt": "x", "chosen": "same", "rejected": "same"}).encode(), "identical"),
    (b'{"prompt": "x", "chosen": "\xff\xfe", "rejected": "b"}', "invalid UTF-8"),
])
def test_each_malformed_line_names_file_and_line(tmp_path, bad, message):
    path = write_lines(tmp_path / "p.jsonl", [json.dumps(GOOD), json.dumps(GOOD), bad])
    with pytest.raises(PreferenceFileError, match=rf"p.jsonl:3: .*{message}"):
        read_preferences(path)


def test_skip_invalid_reports_every_refused_line(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [json.dumps(GOOD), b"oops", b"", json.dumps(GOOD), b"[]"])
    pairs, report = read_preferences(path, skip_invalid=True)
    assert len(pairs) == 2 and report["read"] == 2 and report["blank_lines"] == 1
    assert len(report["refused"]) == 2 and "p.jsonl:2" in report["refused"][0] and "p.jsonl:5" in report["refused"][1]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(PreferenceFileError, match="not found"):
        read_preferences(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(PreferenceFileError, match="no valid preference pairs"):
        read_preferences(tmp_path / "empty.jsonl")


def test_good_file_roundtrips_with_extra_keys_and_unicode(tmp_path):
    pairs = [GOOD, {**GOOD, "chosen": "Très bien 🙂", "extra": 1.5}]
    write_preferences(tmp_path / "p.jsonl", pairs)
    back, report = read_preferences(tmp_path / "p.jsonl")
    assert back == pairs and report["refused"] == []


def test_pair_encoding_masks_and_truncation_rule(tok):
    (c_ids, c_mask), (r_ids, r_mask), truncated = encode_pair(tok, GOOD, 64)
    assert not truncated
    p = tok.encode_prompt(GOOD["prompt"])
    assert c_ids[:len(p)] == p and c_ids[len(p):] == tok.encode_response(GOOD["chosen"])
    assert c_mask == [False] * len(p) + [True] * (len(c_ids) - len(p))
    assert c_ids[-1] == tok.end_id
    long = {"prompt": "Review: " + "word " * 100, "chosen": "good " * 80, "rejected": "bad."}
    (c_ids, c_mask), (r_ids, r_mask), truncated = encode_pair(tok, long, 64)
    assert truncated and len(c_ids) == 64 and len(r_ids) <= 64
    assert sum(c_mask) >= 1 and sum(r_mask) == len(tok.encode_response("bad."))  # never empty
    assert c_ids[sum(not m for m in c_mask) - 1] == tok.response_id  # the prompt keeps its end


def test_bradley_terry_labels_follow_gold_reward():
    rng = random.Random(0)
    good, bad = "The acting was brilliant.", "The acting was awful."  # rewards +1 and -1
    wins = sum(label_pair(rng, GOOD["prompt"], good, bad)["chosen"] == good for _ in range(4000))
    assert abs(wins / 4000 - 1 / (1 + 2.718281828 ** -2)) < 0.025  # σ(2) ≈ 0.881


def test_shipped_example_file_is_valid():
    from pathlib import Path
    pairs, report = read_preferences(Path(__file__).resolve().parents[2] / "data" / "example_prefs.jsonl")
    assert len(pairs) == 24 and report["refused"] == [] and all(set(p) == {"prompt", "chosen", "rejected"} for p in pairs)
