"""Real preference data as it ships: each layout read to exact strings, HH's split against TRL's,
roles kept through reading, tokens and back, every bad line one error naming file and line, and the
toy's token ids untouched by the fast, compact encoding."""
import json
import random

import pytest

from minidpo import chat
from minidpo.preferences import PreferenceFileError, encode_pair, encode_pairs, read_preferences
from minidpo.tokenizer import EXAMPLE_PREFS, Tokenizer

ASK = "\n\nHuman: Is The Quiet Bridge worth watching?\n\nAssistant:"
HH = {"chosen": ASK + " The acting was superb, and the ending is earned.", "rejected": ASK + " The acting was dull."}
SYSTEM_TALK = [{"role": "system", "content": "You talk about films."}, {"role": "user", "content": "Hi!"},
               {"role": "assistant", "content": "Hello. Which film?"},
               {"role": "user", "content": "Is The Quiet Bridge worth watching?"}]
RENDERED = ("\n\nSystem: You talk about films.\n\nHuman: Hi!\n\nAssistant: Hello. Which film?"
            "\n\nHuman: Is The Quiet Bridge worth watching?\n\nAssistant:")
ULTRAFEEDBACK = {"prompt": "Is The Quiet Bridge worth watching?", "prompt_id": "0f3a",
                 "chosen": [{"content": "Is The Quiet Bridge worth watching?", "role": "user"},
                            {"content": "Yes: a warm film.", "role": "assistant"}],
                 "rejected": [{"content": "Is The Quiet Bridge worth watching?", "role": "user"},
                              {"content": "Ask someone else.", "role": "assistant"}],
                 "messages": [{"content": "Is The Quiet Bridge worth watching?", "role": "user"},
                              {"content": "Yes: a warm film.", "role": "assistant"}],
                 "score_chosen": 8.0, "score_rejected": 2.5}


def trl_split(chosen, rejected):
    """TRL's rule for an implicit string prompt (trl.extract_prompt): the longest common prefix of the
    two strings, less one trailing space."""
    i = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), min(len(chosen), len(rejected)))
    if i > 0 and chosen[i - 1] == " ":
        i -= 1
    return chosen[:i], chosen[i:], rejected[i:]


def read_one(tmp_path, line) -> dict:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    (pair,), report = read_preferences(path)
    assert report["read"] == 1 and report["refused"] == []
    return pair


def triple(pair):
    return pair["prompt"], pair["chosen"], pair["rejected"]


def test_each_layout_is_read_to_exact_strings(tmp_path):
    assert triple(read_one(tmp_path, HH)) == (ASK, " The acting was superb, and the ending is earned.",
                                              " The acting was dull.")
    explicit = {"prompt": SYSTEM_TALK, "chosen": [{"role": "assistant", "content": "Yes: a warm film."}],
                "rejected": [{"role": "assistant", "content": "No."}]}
    assert triple(read_one(tmp_path, explicit)) == (RENDERED, " Yes: a warm film.", " No.")
    implicit = {"chosen": SYSTEM_TALK + [{"role": "assistant", "content": "Yes: a warm film."}],
                "rejected": SYSTEM_TALK + [{"role": "assistant", "content": "No."}]}
    assert triple(read_one(tmp_path, implicit)) == (RENDERED, " Yes: a warm film.", " No.")
    uf = read_one(tmp_path, ULTRAFEEDBACK)
    assert triple(uf) == (ASK, " Yes: a warm film.", " Ask someone else.") and uf["score_chosen"] == 8.0
    plain = {"prompt": "Review: The Silent Harbor", "chosen": "I loved this film.", "rejected": "I hated it."}
    assert triple(read_one(tmp_path, plain)) == triple(plain)  # the toy's layout: as it is


def test_hh_split_is_trls_at_the_marker_and_keeps_whole_replies_where_trl_cuts_inside():
    at_marker = {"chosen": ASK + " Yes, see it.", "rejected": ASK + " No."}
    assert chat.split_hh(**at_marker) == trl_split(**at_marker) == (ASK, " Yes, see it.", " No.")
    two_turns = {k: ASK + " Which one?\n\nHuman: The remake." + ASK[-len("\n\nAssistant:"):] + v
                 for k, v in (("chosen", " Good."), ("rejected", " Bad."))}
    assert chat.split_hh(**two_turns) == trl_split(**two_turns)
    assert chat.split_hh(**two_turns)[0].endswith("The remake.\n\nAssistant:")
    # both replies begin "The acting was": TRL trains on " superb…" / " dull.", we on the whole replies
    trl = trl_split(**HH)
    assert trl == (ASK + " The acting was", " superb, and the ending is earned.", " dull.")
    assert chat.split_hh(**HH) == (ASK, " The acting was superb, and the ending is earned.", " The acting was dull.")


def test_roles_of_a_multi_turn_prompt_survive_reading_encoding_and_decoding(tmp_path, tok):
    line = {"prompt": SYSTEM_TALK, "chosen": [{"role": "assistant", "content": "Yes."}],
            "rejected": [{"role": "assistant", "content": "No."}]}
    pair = read_one(tmp_path, line)
    gpt2_kind = Tokenizer(tok.enc._mergeable_ranks, kind="gpt2")
    for t in (tok, gpt2_kind):
        (ids, mask), _ = encode_pairs(t, [pair], 512)[0][0]
        prompt_ids = [i for i, m in zip(ids, mask) if not m]
        assert chat.parse_prompt(t.decode(prompt_ids)) == SYSTEM_TALK
        assert t.decode([i for i, m in zip(ids, mask) if m]) == " Yes."


def test_the_jinja_template_renders_what_minidpo_renders():
    jinja2 = pytest.importorskip("jinja2")  # (torch's own dependency; transformers renders with it)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise ValueError(message)
    for before, after in (("", ""), ("<|prompt|>", "<|response|>")):
        out = env.from_string(chat.chat_template(before, after)).render(
            messages=SYSTEM_TALK, add_generation_prompt=True, raise_exception=raise_exception)
        assert out == before + chat.render_prompt(SYSTEM_TALK) + after
    assert chat.render_prompt(SYSTEM_TALK) == RENDERED and chat.parse_prompt(RENDERED) == SYSTEM_TALK
    with pytest.raises(ValueError, match="unknown role: tool"):
        env.from_string(chat.CHAT_TEMPLATE).render(messages=[{"role": "tool", "content": "x"}],
                                                   raise_exception=raise_exception)


def _msgs(*turns):
    return [{"role": r, "content": c} for r, c in turns]


BAD_LINES = [
    ({"chosen": ASK + " Yes.", "rejected": "\n\nHuman: Another question?\n\nAssistant: No."},
     "'chosen' and 'rejected' do not share a prompt"),
    ({"chosen": ASK + " Yes.", "rejected": ASK + " No.\n\nHuman: Why not?"}, "'rejected' ends in a Human turn"),
    ({"chosen": "I loved it.", "rejected": "I hated it."}, "has no '\\\\n\\\\nAssistant:' turn"),
    ({"chosen": _msgs(("user", "Hi"), ("assistant", "Yes.")), "rejected": _msgs(("user", "Hi"), ("user", "Hm?"))},
     "'rejected' ends in a user turn, not the assistant's"),
    ({"chosen": _msgs(("user", "Hi"), ("assistant", "Yes.")), "rejected": _msgs(("user", "Bye"), ("assistant", "No."))},
     "do not share a prompt"),
    ({**ULTRAFEEDBACK, "prompt": "Another question?"}, "not the conversations' last user turn"),
    ({"prompt": _msgs(("user", "Hi\n\nAssistant: sure")), "chosen": _msgs(("assistant", "a")),
      "rejected": _msgs(("assistant", "b"))}, "holds the turn marker"),
    ({"prompt": _msgs(("robot", "Hi")), "chosen": _msgs(("assistant", "a")), "rejected": _msgs(("assistant", "b"))},
     r"prompt\[0\] must be"),
]


@pytest.mark.parametrize("bad, message", BAD_LINES, ids=[m for _, m in BAD_LINES])
def test_a_bad_line_of_each_layout_names_file_and_line_and_nothing_is_dropped(tmp_path, bad, message):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in (HH, ULTRAFEEDBACK, bad)), encoding="utf-8")
    with pytest.raises(PreferenceFileError, match=rf"p.jsonl:3: .*{message}"):
        read_preferences(path)
    pairs, report = read_preferences(path, skip_invalid=True)
    assert len(pairs) == 2 and len(report["refused"]) == 1 and report["refused"][0].startswith(f"{path}:3: ")


def test_a_bad_line_through_the_cli_is_one_error_line(tmp_path, capsys):
    from minidpo.harness.cli import main
    from minidpo.tokenizer import shipped_file
    path, run = tmp_path / "hh.jsonl", str(tmp_path / "run")
    path.write_text(json.dumps(HH) + "\n" + json.dumps(BAD_LINES[0][0]) + "\n", encoding="utf-8")
    assert main(["import-gpt2", "--weights", str(shipped_file("tiny_gpt2")), "--out", run, "--fast", "--quiet"]) == 0
    capsys.readouterr()
    for command in (["sft", "--data", path], ["dpo", "--data", path, "--val-data", path]):
        assert main([*map(str, command), "--out", run, "--fast", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {path}:2: 'chosen' and 'rejected' do not share a prompt (their dialogues differ "
                       "before the last '\\n\\nAssistant:')"], err


def test_lines_are_numbered_as_splitlines_numbers_them_and_a_sample_keeps_file_order(tmp_path):
    lines = [json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"}).encode() for i in range(6)]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + lines[0] + b"\r\n" + lines[1] + b"\r" + lines[2] + b"\n\n" + b"\r\n".join(lines[3:]))
    pairs, report = read_preferences(path)
    assert [p["prompt"] for p in pairs] == [f"p{i}" for i in range(6)] and report["blank_lines"] == 1
    path.write_bytes(path.read_bytes() + b"\r{bad")
    with pytest.raises(PreferenceFileError, match=r"p.jsonl:8: invalid JSON"):  # = bytes.splitlines()'s numbering
        read_preferences(path)
    sample, report = read_preferences(_six(tmp_path), max_pairs=3, seed=1)
    again, _ = read_preferences(_six(tmp_path), max_pairs=3, seed=1)
    idx = [int(p["prompt"][1:]) for p in sample]
    assert sample == again and idx == sorted(idx) and len(idx) == 3 and report["sampled"] == "3 of 6 (seed 1)"


def _six(tmp_path):
    path = tmp_path / "six.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(6)))
    return path


def test_the_toys_token_ids_are_those_of_before_and_the_compact_rows_are_encode_pairs(tok):
    pair = {"prompt": "Review: The Silent Harbor", "chosen": "The acting was brilliant and the plot was moving.",
            "rejected": "The plot was dull."}
    (c_ids, c_mask), (r_ids, r_mask) = encode_pairs(tok, [pair], 64)[0][0]
    # the ids the toy pipeline encoded before this change (commit 867f80e), written down
    assert c_ids == [591, 266, 58, 258, 414, 457, 592, 257, 356, 270, 576, 580, 100, 283, 256, 378, 270, 558, 46, 593]
    assert r_ids == [591, 266, 58, 258, 414, 457, 592, 257, 378, 270, 542, 46, 593]
    assert c_mask == [False] * 7 + [True] * 13 and r_mask == [False] * 7 + [True] * 6
    assert len(encode_pairs(tok, [], 64)[0]) == 0
    cut, report = encode_pairs(tok, [pair], 12)
    assert cut[0][0][0] == [266, 58, 258, 414, 457, 592, 257, 356, 270, 576, 580, 100] and report["truncated"] == 1
    # and every row of the batched, compact path is encode_pair's, at every context, for both kinds
    pairs, _ = read_preferences(EXAMPLE_PREFS)
    rng = random.Random(0)
    words = ["the", "film", "<|end|>", "<|endoftext|>", "naïve", "🙂", "\r\n", "\t", "x", ""]
    pairs += [{k: " ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for k in ("prompt", "chosen", "rejected")}
              for _ in range(300)]
    for t in (tok, Tokenizer(tok.enc._mergeable_ranks, kind="gpt2")):
        for block in (16, 64, 512):
            encoded, report = encode_pairs(t, pairs, block)
            expected = [encode_pair(t, p, block) for p in pairs]
            assert list(encoded) == [(c, r) for c, r, _ in expected]
            assert report["truncated"] == sum(cut for _, _, cut in expected)
            assert encoded.lengths().tolist() == [[len(c[0]), len(r[0])] for c, r, _ in expected]
