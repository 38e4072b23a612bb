"""The files lesson 22 imports are what `python -m minidpo.tools.own_data` makes from seed 0: the pair
files byte for byte, the tiny GPT-2's tokenizer and the record of its pretraining text; its weights
(a training run) in the slow tier. And what the lesson says of them: the base model read no sentence
of any reply, the held-out replies are new, the rejected replies are of seven varied kinds."""
import json

import pytest
import torch

from minidpo.chat import split_hh
from minidpo.interop.gpt2 import folder_tokenizer, import_gpt2
from minidpo.tokenizer import Tokenizer, shipped_file, train_bpe
from minidpo.tools import own_data

TRAIN, VAL, FOLDER = shipped_file("hh_train.jsonl"), shipped_file("hh_val.jsonl"), shipped_file("tiny_gpt2")


@pytest.fixture(scope="module")
def made():
    return own_data.make_files(json.loads((FOLDER / "pretraining.json").read_text())["seed"])


@pytest.fixture(scope="module")
def record():
    return json.loads((FOLDER / "pretraining.json").read_text())


def test_the_shipped_pair_files_are_what_the_tool_makes(made, tmp_path):
    for name, rows in (("hh_train.jsonl", made["train"]), ("hh_val.jsonl", made["val"])):
        own_data.write_jsonl(tmp_path / name, rows)
        assert (tmp_path / name).read_bytes() == shipped_file(name).read_bytes(), name
    assert len(made["train"]) == own_data.SIZES["train"] and len(made["val"]) == own_data.SIZES["val"]
    other = own_data.make_files(1)  # another seed, other files: the comparison above can fail
    assert other["train"] != made["train"]


def test_the_tiny_gpt2_was_pretrained_on_the_text_the_tool_makes(made, record, tmp_path):
    text = "\n".join(made["text"]).encode("utf-8")
    assert own_data.sha256(text) == record["pretraining_text"]["sha256"]
    assert record["pretraining_text"]["documents"] == len(made["text"]) and record["settings"] == own_data.PRETRAIN
    ours = Tokenizer(train_bpe("\n".join(made["text"]), record["settings"]["merges"]), kind="gpt2")
    shipped = folder_tokenizer(FOLDER, tmp_path / "ranks.tiktoken")
    assert shipped.fingerprint == ours.fingerprint  # the same merges, learnt from that text alone
    model = import_gpt2(FOLDER)
    assert model.num_params() == record["parameters"] and model.config.n_layer == record["settings"]["n_layer"]


def assistant_turns(doc: str) -> list[str]:
    return [turn.split("\n\nHuman:")[0].removeprefix(" ") for turn in doc.split("\n\nAssistant:")[1:]]


def test_the_base_model_read_no_reply_of_either_file(made):
    answered = {t for doc in made["text"] for t in assistant_turns(doc)}
    assert len(answered) > 3000  # it read film talk ...
    for line in made["train"] + made["val"]:  # ... but no reply of a pair, chosen or rejected
        assert answered.isdisjoint(own_data.replies(line)), line
    text = "\n".join(made["text"])
    assert not any(s in text for s in own_data.HEDGES + own_data.BRUSH_OFFS)  # and no worse reply of any kind
    assert not any(len(set(t.split(", "))) < len(t.split(", ")) for t in answered)  # (no clause said twice)


def test_held_out_replies_are_new_and_rejected_replies_are_varied(made):
    seen = {r for line in made["train"] for r in own_data.replies(line)}
    assert all(r not in seen for line in made["val"] for r in own_data.replies(line))
    for lines in (made["train"], made["val"]):
        kinds = {line["rejected_kind"] for line in lines}
        rejected = {own_data.replies(line)[1] for line in lines}
        assert kinds == set(own_data.REJECTED_KINDS) and len(rejected) >= 0.8 * len(lines)
        for line in lines:  # each line is a valid HH line whose replies are what `replies` reads
            assert split_hh(line["chosen"], line["rejected"])[1:] == tuple(" " + r for r in own_data.replies(line))
    train_titles, heldout = own_data.world.split_titles()
    for lines, films in ((made["train"], train_titles), (made["val"], heldout)):  # held-out films apart
        first_questions = [line["chosen"].split("\n\nAssistant:")[0] for line in lines]
        assert all(any(t in q for t in films) for q in first_questions)


def test_every_kind_of_worse_reply_is_what_it_says():
    import random
    rng, title, chosen = random.Random(0), "The Golden Engine", "The Golden Engine has a warm score. Give it a try."
    titles = ["The Golden Engine", "The Iron Signal"]
    got = {k: own_data.worse_reply(rng, k, "music", title, title, chosen, titles) for k in own_data.REJECTED_KINDS}
    assert "The Iron Signal" in got["wrong_film"] and title not in got["wrong_film"]
    assert title not in got["title_cut"] and ("The Golden " in got["title_cut"] or "The Engine" in got["title_cut"])
    assert got["same_start"].startswith("The Golden Engine has a warm score. ") and got["same_start"] != chosen
    assert any(s in got["vague"] for s in own_data.HEDGES) and any(s in got["brush_off"] for s in own_data.BRUSH_OFFS)
    clause = got["repetitive"].rstrip(".").split(", ")
    assert len(clause) == 3 and clause[1] == clause[2] and clause[0].lower() == clause[1].lower()
    with pytest.raises(ValueError, match="unknown kind"):
        own_data.worse_reply(rng, "rude", "music", title, title, chosen, titles)


def test_the_data_bench_still_gets_long_hh_dialogues():
    lines = own_data.hh_pairs(50, seed=3, turns=(3, 8))
    turns = [line["chosen"].count("\n\nHuman:") for line in lines]
    assert min(turns) >= 3 and max(turns) <= 8 and len(set(turns)) > 2


@pytest.mark.slow
def test_the_shipped_weights_are_what_pretraining_makes(made, record, tmp_path):
    """The pretraining run again from the seed; the same machine and thread count give the same
    bits, another CPU may round differently, so the weights are compared with a tolerance."""
    torch.set_num_threads(record.get("threads", 2))
    again = own_data.tiny_gpt2(tmp_path / "tiny", made["text"], seed=record["seed"])
    assert again["pretraining_text"] == record["pretraining_text"]
    ours, shipped = import_gpt2(tmp_path / "tiny").state_dict(), import_gpt2(FOLDER).state_dict()
    worst = max((ours[k] - shipped[k]).abs().max().item() for k in shipped)
    assert worst < 1e-3, worst
    assert again["loss_last_50_steps"] == pytest.approx(record["loss_last_50_steps"], abs=1e-3)
