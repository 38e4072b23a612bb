"""Every registered loss against a direct transcription of its paper's equation, element by element
in plain Python floats (math module): random float64 inputs to 1e-10, equal log-probs, very large
margins, and zero-length responses refused."""
import math
import random

import pytest
import torch

from minidpo.losses import LOSSES, PairRecord, loss_arguments


def log_sigmoid(z):  # stable in plain floats
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def sigmoid(z):
    return math.exp(log_sigmoid(z))


# one example: pc, pr = policy log-probs (summed), rc, rr = reference, lc, lr = lengths, b = β, and the
# rejected per-token log-probs `tok_r`; `batch` holds every example (AOT and BCO need the batch)
def ref_sigmoid(e, a):
    h = (e["pc"] - e["rc"]) - (e["pr"] - e["rr"])
    return -(1 - a["label_smoothing"]) * log_sigmoid(e["b"] * h) - a["label_smoothing"] * log_sigmoid(-e["b"] * h)


def ref_ipo(e, a):
    h = (e["pc"] - e["rc"]) - (e["pr"] - e["rr"])
    return (h - 1 / (2 * e["b"])) ** 2


def ref_hinge(e, a):
    return max(0.0, 1 - e["b"] * ((e["pc"] - e["rc"]) - (e["pr"] - e["rr"])))


def ref_robust(e, a):
    z, eps = e["b"] * ((e["pc"] - e["rc"]) - (e["pr"] - e["rr"])), a["label_smoothing"]
    return (-(1 - eps) * log_sigmoid(z) + eps * log_sigmoid(-z)) / (1 - 2 * eps)


def ref_exo(e, a):
    z, eps = e["b"] * ((e["pc"] - e["rc"]) - (e["pr"] - e["rr"])), a["label_smoothing"]
    return sigmoid(z) * (log_sigmoid(z) - math.log(1 - eps)) + sigmoid(-z) * (log_sigmoid(-z) - math.log(eps))


def ref_discopop(e, a):
    z = e["b"] * ((e["pc"] - e["rc"]) - (e["pr"] - e["rr"]))
    mix = sigmoid(z / a["tau"])
    return -log_sigmoid(z) * (1 - mix) + math.exp(-z) * mix


def ref_rpo(e, a):
    return ref_sigmoid(e, {"label_smoothing": 0.0}) + a["alpha"] * (-e["pc"] / e["lc"])


def ref_dpop(e, a):
    h = (e["pc"] - e["rc"]) - (e["pr"] - e["rr"])
    return -log_sigmoid(e["b"] * (h - a["lam"] * max(0.0, e["rc"] - e["pc"])))


def ref_bco_pair(e, a):
    rewards = [e2["b"] * (e2["pc"] - e2["rc"]) for e2 in e["batch"]] + [e2["b"] * (e2["pr"] - e2["rr"]) for e2 in e["batch"]]
    delta = sum(rewards) / len(rewards)
    return -log_sigmoid(e["b"] * (e["pc"] - e["rc"]) - delta) - log_sigmoid(-(e["b"] * (e["pr"] - e["rr"]) - delta))


def ref_sppo_hard(e, a):
    return (e["pc"] - e["rc"] - 1 / (2 * e["b"])) ** 2 + (e["pr"] - e["rr"] + 1 / (2 * e["b"])) ** 2


def ref_nca_pair(e, a):
    w, l = e["b"] * (e["pc"] - e["rc"]), e["b"] * (e["pr"] - e["rr"])
    return -log_sigmoid(w) - 0.5 * log_sigmoid(-w) - 0.5 * log_sigmoid(-l)


def ref_apo_zero(e, a):
    return 1 - sigmoid(e["b"] * (e["pc"] - e["rc"])) + sigmoid(e["b"] * (e["pr"] - e["rr"]))


def ref_apo_down(e, a):
    h = (e["pc"] - e["rc"]) - (e["pr"] - e["rr"])
    return sigmoid(e["b"] * (e["pc"] - e["rc"])) + 1 - sigmoid(e["b"] * h)


def ref_aot(e, a):
    i = e["index"]
    pol = sorted(e2["pc"] - e2["pr"] for e2 in e["batch"])[i]
    ref = sorted(e2["rc"] - e2["rr"] for e2 in e["batch"])[i]
    return -log_sigmoid(e["b"] * (pol - ref))


def ref_aot_pair(e, a):
    i = e["index"]
    chosen = sorted(e2["pc"] - e2["rc"] for e2 in e["batch"])[i]
    rejected = sorted(e2["pr"] - e2["rr"] for e2 in e["batch"])[i]
    return -log_sigmoid(e["b"] * (chosen - rejected))


def ref_simpo(e, a):
    return -log_sigmoid(e["b"] * (e["pc"] / e["lc"] - e["pr"] / e["lr"]) - e["b"] * a["gamma_beta_ratio"])


def ref_orpo(e, a):
    mc, mr = e["pc"] / e["lc"], e["pr"] / e["lr"]
    odds = lambda m: math.exp(m) / (1 - math.exp(m))
    return -mc - e["b"] * log_sigmoid(math.log(odds(mc) / odds(mr)))


def ref_sft(e, a):
    return -e["pc"] / e["lc"]


def ref_unlikelihood(e, a):
    return -e["pc"] / e["lc"] + a["alpha"] * sum(-math.log(1 - math.exp(t)) for t in e["tok_r"]) / e["lr"]


REFERENCE = {name[4:].replace("exo", "exo_pair"): fn for name, fn in globals().items() if name.startswith("ref_")}


PAIRED = sorted(n for n, l in LOSSES.items() if l.data == "pairs")


def test_every_registered_loss_has_a_transcription():
    assert set(REFERENCE) | {"kto"} == set(LOSSES), set(LOSSES) ^ set(REFERENCE)


def test_kto_equals_its_equation(seed=0):
    """KTO (Ethayarajh et al. eq. 8), per example in plain floats, with the reference point z0 the
    clamped mean log-ratio of the mismatched completions."""
    from minidpo.losses import UnpairedRecord
    g = random.Random(seed)
    n = 24
    vals = [[-g.uniform(1, 20) for _ in range(n)] for _ in range(4)]
    desirable = [g.random() < 0.5 for _ in range(n)]
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    for shift in (0.0, 3.0):  # z0 clamped at 0, then positive
        kl_logps = [v + shift for v in vals[3]]
        rec = UnpairedRecord(t(vals[0]), t(vals[1]), t(kl_logps), t(vals[3]), torch.tensor(desirable), 0.5)
        out = LOSSES["kto"](rec, **loss_arguments("kto", loss_args={"undesirable_weight": 1.3}))
        z0 = max(0.0, sum(a - b for a, b in zip(kl_logps, vals[3])) / n)
        expected = [(1 - sigmoid(0.5 * (p - r - z0))) if d else 1.3 * (1 - sigmoid(0.5 * (z0 - (p - r))))
                    for p, r, d in zip(vals[0], vals[1], desirable)]
        assert torch.allclose(out.losses, t(expected), rtol=1e-10, atol=1e-12)
        assert len(out.chosen_rewards) == sum(desirable) and len(out.rejected_rewards) == n - sum(desirable)


def make_batch(seed: int, n: int = 16, spread: float = 3.0, equal: bool = False):
    """A record of n pairs with random float64 log-probs, per-token values that sum to them."""
    g = random.Random(seed)
    examples, rows = [], {k: [] for k in ("pc", "pr", "rc", "rr", "tc", "tr", "mc", "mr")}
    T = 8
    for _ in range(n):
        lc, lr = g.randint(1, T), g.randint(1, T)
        tc = [-g.uniform(0.05, spread) for _ in range(lc)]
        tr = [-g.uniform(0.05, spread) for _ in range(lr)]
        pc, pr = sum(tc), sum(tr)
        rc, rr = (pc, pr) if equal else (pc + g.uniform(-2, 2), pr + g.uniform(-2, 2))
        examples.append({"pc": pc, "pr": pr, "rc": rc, "rr": rr, "lc": lc, "lr": lr, "tok_r": tr})
        for key, v in (("pc", pc), ("pr", pr), ("rc", rc), ("rr", rr)):
            rows[key].append(v)
        rows["tc"].append(tc + [0.0] * (T - lc))
        rows["tr"].append([0.0] * (T - lr) + tr)  # response tokens sit at the end, as in a real row
        rows["mc"].append([True] * lc + [False] * (T - lc))
        rows["mr"].append([False] * (T - lr) + [True] * lr)
    d = lambda k: torch.tensor(rows[k], dtype=torch.float64)
    m = lambda k: torch.tensor(rows[k])
    beta = g.choice([0.1, 0.5, 2.0])
    for i, e in enumerate(examples):
        e.update(b=beta, batch=examples, index=i)
    return PairRecord(d("pc"), d("pr"), beta, d("rc"), d("rr"), d("tc"), d("tr"), m("mc"), m("mr")), examples


ARGS = {"robust": {"label_smoothing": 0.2}, "sigmoid": {"label_smoothing": 0.15}, "rpo": {"alpha": 0.7},
        "dpop": {"lam": 5.0}, "simpo": {"gamma_beta_ratio": 0.3}, "unlikelihood": {"alpha": 0.5},
        "exo_pair": {"label_smoothing": 0.01}, "discopop": {"tau": 0.05}}


@pytest.mark.parametrize("name", PAIRED)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_equals_its_equation_on_random_float64(name, seed):
    record, examples = make_batch(seed)
    args = loss_arguments(name, loss_args=ARGS.get(name, {}))
    out = LOSSES[name](record, **args)
    expected = torch.tensor([REFERENCE[name](e, args) for e in examples], dtype=torch.float64)
    assert out.losses.dtype == torch.float64 and out.losses.shape == (len(examples),)
    assert torch.allclose(out.losses, expected, rtol=1e-10, atol=1e-10), (out.losses - expected).abs().max()
    assert not out.chosen_rewards.requires_grad and out.chosen_rewards.shape == (len(examples),)


@pytest.mark.parametrize("name", PAIRED)
def test_equal_log_probs_and_huge_margins(name):
    record, examples = make_batch(7, equal=True)  # policy = reference: every log-ratio is 0
    args = loss_arguments(name)
    out = LOSSES[name](record, **args)
    expected = torch.tensor([REFERENCE[name](e, args) for e in examples], dtype=torch.float64)
    assert torch.allclose(out.losses, expected, rtol=1e-10, atol=1e-10)
    if LOSSES[name].reference:
        assert (out.chosen_rewards == 0).all() and (out.rejected_rewards == 0).all()
    # margins of ±1e4 nats: finite losses, and finite gradients, whichever way the pair is ranked
    z = torch.zeros(2, dtype=torch.float64)
    big = torch.tensor([1e4, -1e4], dtype=torch.float64, requires_grad=True)
    tokens = torch.stack([big / 2, big / 2], 1)  # two tokens each: a valid per-token split (when negative)
    mask = torch.ones(2, 2, dtype=torch.bool)
    rec = PairRecord(big, -big, 1.0, z, z, tokens, -tokens, mask, mask)
    try:
        losses_ = LOSSES[name](rec, **args).losses
    except ValueError:
        pytest.skip(f"{name} refuses this input on purpose")
    if name in ("ipo", "sppo_hard", "discopop", "orpo", "simpo", "sft", "unlikelihood", "rpo"):
        return  # squared, exponential or log-probability terms grow with the margin by design
    assert torch.isfinite(losses_).all(), losses_
    losses_.sum().backward()
    assert torch.isfinite(big.grad).all()


def test_zero_length_responses_are_refused_clearly():
    record, _ = make_batch(3, n=2)
    record.rejected_mask = torch.zeros_like(record.rejected_mask)
    for name in ("simpo", "orpo", "sft", "unlikelihood", "rpo"):
        if name == "rpo":
            record.chosen_mask = torch.zeros_like(record.chosen_mask)
        with pytest.raises(ValueError, match="a response has no tokens"):
            LOSSES[name](record, **loss_arguments(name))


def test_a_loss_refuses_arguments_it_does_not_take():
    with pytest.raises(ValueError, match="loss 'ipo' takes no label smoothing"):
        loss_arguments("ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="loss 'simpo' takes no 'gamma'"):
        loss_arguments("simpo", loss_args={"gamma": 0.5})
    assert loss_arguments("simpo", loss_args={"gamma_beta_ratio": 0.2}) == {"gamma_beta_ratio": 0.2, "label_smoothing": 0.0}


def test_reference_free_losses_say_so():
    free = {n for n, l in LOSSES.items() if not l.reference}
    assert free == {"simpo", "orpo", "sft", "unlikelihood"}
    record, _ = make_batch(5)
    record.ref_chosen_logps = record.ref_rejected_logps = None
    for name in free:  # they run without reference log-probs ...
        LOSSES[name](record, **loss_arguments(name))
    with pytest.raises(ValueError, match="needs reference log-probs"):  # ... the others cannot
        LOSSES["sigmoid"](record, **loss_arguments("sigmoid"))


@pytest.fixture(scope="module")
def small_pairs(fast_run, tmp_path_factory):
    from minidpo.preferences import read_preferences, write_preferences
    run, _ = fast_run
    folder = tmp_path_factory.mktemp("small")
    write_preferences(folder / "train.jsonl", read_preferences(run.path("prefs_train.jsonl"))[0][:48])
    write_preferences(folder / "val.jsonl", read_preferences(run.path("prefs_val.jsonl"))[0][:16])
    return run, folder


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_trains_without_nan_and_lowers_its_own_loss(name, small_pairs, monkeypatch):
    """Four epochs on 48 pairs through train_dpo (files, encoding, reference cache), then the loss's
    own value on the whole training set before and after. DiscoPOP at its paper's β (0.05)."""
    from minidpo import dpo
    from minidpo.checkpoint import load_gpt
    from minidpo.preferences import encode_pairs, read_preferences
    run, folder = small_pairs
    if not LOSSES[name].reference:  # a reference-free loss must never score with the reference
        def refuse(*a, **k):
            raise AssertionError(f"{name} needs no reference, yet the reference was run")
        monkeypatch.setattr(dpo, "cached_reference_logps", refuse)
        monkeypatch.setattr(dpo, "pair_logps", refuse)
    cfg = dpo.DPOConfig.fast(loss_type=name, epochs=4, batch_size=16, lr=3e-4, log_every=1, warmup=1,
                             **({"beta": 0.05} if name == "discopop" else {}))
    m = dpo.train_dpo(cfg, run.tok, run.path("sft.pt"), folder / "train.jsonl", folder / "val.jsonl",
                      folder / name, quiet=True, out_name=name)
    steps = [r for r in m["history"] if "loss" in r]
    assert all(math.isfinite(r["loss"]) for r in steps), name
    if LOSSES[name].data == "unpaired":  # KTO: its own loss, first epoch against last epoch
        per_epoch = len(steps) // 4
        assert sum(r["loss"] for r in steps[-per_epoch:]) < sum(r["loss"] for r in steps[:per_epoch])
        return
    monkeypatch.undo()
    enc, _ = encode_pairs(run.tok, read_preferences(folder / "train.jsonl")[0], 64)
    ref = dpo.pair_logps(run.load_policy("sft.pt"), enc, run.tok.end_id, False) if LOSSES[name].reference else None
    with torch.no_grad():
        before, _, _ = dpo.batch_loss(run.load_policy("sft.pt"), enc, ref, cfg, run.tok.end_id)
        trained = load_gpt(folder / name / f"{name}.pt")[0].eval()
        after, _, metrics = dpo.batch_loss(trained, enc, ref, cfg, run.tok.end_id)
    assert after.item() < before.item(), (name, before.item(), after.item())
    if name == "discopop":  # its loss falls by ranking the pairs the WRONG way: a local minimum just
        assert metrics["rewards/accuracies"] < 0.5  # below a margin of 0 (see the loss bench)


def test_record_path_equals_the_four_number_path_bit_for_bit(fast_run):
    """The old CLI's losses (sigmoid with and without label smoothing, IPO, hinge) through the record
    of a real batch give exactly the numbers of dpo_loss on its four log-prob tensors."""
    from minidpo.dpo import pair_logps, pair_record
    from minidpo.losses import dpo_loss
    from minidpo.preferences import encode_pairs, read_preferences
    run, _ = fast_run
    policy = run.load_policy("sft.pt")
    enc, _ = encode_pairs(run.tok, read_preferences(run.path("prefs_val.jsonl"))[0][:32], policy.config.block_size)
    ref = pair_logps(policy, enc, run.tok.end_id, average=False)
    with torch.no_grad():
        for p in policy.parameters():  # a policy that is not the reference
            p.add_(0.01 * torch.randn_like(p))
    for loss_type, eps in (("sigmoid", 0.0), ("sigmoid", 0.2), ("ipo", 0.0), ("hinge", 0.0)):
        rec = pair_record(policy, enc, run.tok.end_id, 0.5, False, ref)
        out = LOSSES[loss_type](rec, **loss_arguments(loss_type, eps))
        old = dpo_loss(rec.chosen_logps, rec.rejected_logps, ref[:, 0], ref[:, 1], 0.5, eps, loss_type)
        assert all(torch.equal(a, b) for a, b in zip(out, old)), loss_type


def test_unpaired_and_conversational_files_are_read_with_file_and_line(tmp_path):
    import json
    from minidpo.preferences import PreferenceFileError, read_preferences, read_unpaired
    conv = tmp_path / "conv.jsonl"
    lines = [
        {"prompt": [{"role": "user", "content": "Review: The Silent Harbor"}],
         "chosen": [{"role": "assistant", "content": "I loved this film."}],
         "rejected": [{"role": "assistant", "content": "I hated this film."}]},
        {"chosen": [{"role": "user", "content": "Review: The Quiet Mountain"}, {"role": "assistant", "content": "The plot was good."}],
         "rejected": [{"role": "user", "content": "Review: The Quiet Mountain"}, {"role": "assistant", "content": "The plot was bad."}]},
    ]
    conv.write_text("".join(json.dumps(x) + "\n" for x in lines))
    pairs, report = read_preferences(conv)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [  # chat.py's template, roles kept
        ("\n\nHuman: Review: The Silent Harbor\n\nAssistant:", " I loved this film.", " I hated this film."),
        ("\n\nHuman: Review: The Quiet Mountain\n\nAssistant:", " The plot was good.", " The plot was bad.")]
    bad = dict(lines[0], chosen=[{"role": "robot", "content": "x"}])
    conv.write_text(json.dumps(lines[0]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(PreferenceFileError, match=r"conv.jsonl:2: chosen\[0\] must be"):
        read_preferences(conv)
    two = dict(lines[0], rejected=[{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}])
    conv.write_text(json.dumps(two) + "\n")
    with pytest.raises(PreferenceFileError, match=r"conv.jsonl:1: 'rejected' must end in exactly one assistant"):
        read_preferences(conv)
    un = tmp_path / "unpaired.jsonl"
    un.write_text('{"prompt": "Review: X", "completion": "I loved this film.", "label": true}\n'
                  '{"prompt": "Review: X", "completion": "I hated this film.", "label": "no"}\n')
    with pytest.raises(PreferenceFileError, match=r"unpaired.jsonl:2: 'label' must be a boolean, not str"):
        read_unpaired(un)
    examples, report = read_unpaired(un, skip_invalid=True)
    assert len(examples) == 1 and len(report["refused"]) == 1 and examples[0]["label"] is True
    split, report = read_unpaired(tmp_path / "conv.jsonl" if False else _pairs_file(tmp_path))
    assert [(e["completion"], e["label"]) for e in split] == [("I loved this film.", True), ("I hated this film.", False)]
    assert report["split_from_pairs"] and report["read"] == 2


def _pairs_file(tmp_path):
    p = tmp_path / "pairs.jsonl"
    p.write_text('{"prompt": "Review: X", "chosen": "I loved this film.", "rejected": "I hated this film."}\n')
    return p
