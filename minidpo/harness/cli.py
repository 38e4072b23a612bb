"""`python -m minidpo COMMAND`: every stage on its own, or `run` for all of them.

Each command works in a run folder (`--out`, default runs/default, or runs/fast with --fast): it
reads what earlier stages wrote there and writes its own outputs beside them. A stage is reused
when its settings and input files are unchanged since it last ran, and recomputed otherwise. Every
failure a user can cause (a bad preference file, a missing or stale input, an impossible flag value,
an unreadable file) ends with one `error:` line that says what to do, and exit code 2.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

from ..checkpoint import CheckpointError, WriteError
from ..preferences import PreferenceFileError
from .stages import STAGES


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one `error:` line (no usage block), exit code 2."""

    def error(self, message):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _number(kind, low=None, low_inclusive=False, high=None):
    """A finite number of `kind` in the given range: NaN and infinity are refused, always."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if low is not None and (v < low if low_inclusive else v <= low):
            raise argparse.ArgumentTypeError(f"must be {'≥' if low_inclusive else '>'} {low}, got {text}")
        if high is not None and v >= high:
            raise argparse.ArgumentTypeError(f"must be < {high}, got {text}")
        return v
    return parse


POSITIVE_INT, POSITIVE = _number(int, 0), _number(float, 0)
NON_NEGATIVE, PROBABILITY = _number(float, 0, low_inclusive=True), _number(float, 0, True, 0.5)


def _loss_arg(text):
    """KEY=VALUE with a finite number (or true/false) as the value."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    return key, _number(float)(value)


def _common(p: argparse.ArgumentParser, out_default: str | None = None):
    p.add_argument("--out", default=out_default,
                   help=f"run folder (default: {out_default or 'runs/default, or runs/fast with --fast'})")
    p.add_argument("--seed", type=int, default=0, help="fixes every number on CPU (default: 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto = cuda, then mps, then cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="autocast dtype; auto = bf16 on CUDA, fp32 elsewhere")
    p.add_argument("--fast", action="store_true", help="tiny configs: the whole stage in seconds")
    p.add_argument("--force", action="store_true",
                   help="recompute even when the settings and inputs are unchanged")
    p.add_argument("--quiet", action="store_true", help="no per-step progress lines")


STAGE_FLAGS = {  # command -> its own flags (name, parser, help); the rest is `_common`
    "sft": [("--steps", POSITIVE_INT, None), ("--lr", POSITIVE, None), ("--batch-size", POSITIVE_INT, None)],
    "dpo": [("--beta", POSITIVE, None), ("--lr", POSITIVE, None), ("--epochs", POSITIVE_INT, None),
            ("--batch-size", POSITIVE_INT, None), ("--label-smoothing", PROBABILITY, "conservative DPO's ε"),
            ("--grad-accum", POSITIVE_INT, "micro-batches per step: the same batch in less memory")],
    "reward_model": [("--lr", POSITIVE, None), ("--epochs", POSITIVE_INT, None)],
    "rlhf": [("--beta", NON_NEGATIVE, "KL coefficient, ≥ 0 (0: no leash to the reference)"),
             ("--steps", POSITIVE_INT, None), ("--lr", POSITIVE, None)],
}
STAGE_FLAGS["ppo"] = STAGE_FLAGS["grpo"] = STAGE_FLAGS["rlhf"] + [("--epochs", POSITIVE_INT, "passes over each batch")]


def build_parser() -> argparse.ArgumentParser:
    from ..losses import LOSSES
    parser = Parser(prog="python -m minidpo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("run", help="every stage, figures, summary.json and report.md")
    _common(p)
    p.add_argument("--all", action="store_true", help="also PPO, GRPO and every study but the long ones (" + ", ".join(
        s.command for s in STAGES.values() if s.study and not s.long) + ")")

    p = sub.add_parser("tokenizer", help="retrain the BPE merges shipped in data/")
    p.add_argument("--out", default=None, help="merges file (default: data/tokenizer.tiktoken)")
    p.add_argument("--merges", type=POSITIVE_INT, default=512)
    p.add_argument("--seed", type=int, default=0)

    for stage in STAGES.values():
        if stage.name.startswith("eval_"):
            continue  # `evaluate` runs both
        p = sub.add_parser(stage.command, help=stage.help)
        _common(p, "runs/equivalence" if stage.name == "equivalence" else None)
        for flag, parse, text in STAGE_FLAGS.get(stage.name, []):
            p.add_argument(flag, type=parse, help=text)
    p = sub.choices["sft"]
    p.add_argument("--data", help="fine-tune the run's model (import-gpt2's, or the toy's) on the chosen responses "
                                  "of this preference file instead of training on the toy world")
    p.add_argument("--val-data", help="with --data: held-out preference file (default: a seeded 5%% of --data)")
    p.add_argument("--epochs", type=POSITIVE_INT, help="with --data: passes over the pairs (default 1)")
    for name in ("sft", "dpo"):
        sub.choices[name].add_argument("--max-pairs", type=POSITIVE_INT, metavar="N",
                                       help="with --data: a seeded sample of N of its pairs (try things on a laptop)")
    p = sub.choices["dpo"]
    p.add_argument("--data", help="JSONL with prompt/chosen/rejected, or HH-RLHF, TRL or UltraFeedback lines "
                                  "(default: OUT/prefs_train.jsonl)")
    p.add_argument("--val-data", help="held-out JSONL (default: OUT/prefs_val.jsonl)")
    p.add_argument("--loss-type", choices=sorted(LOSSES), metavar="NAME",
                   help="a registered loss (minidpo/losses.py): " + ", ".join(sorted(LOSSES)))
    p.add_argument("--loss-arg", action="append", type=_loss_arg, default=[], metavar="KEY=VALUE",
                   help="a hyperparameter of the loss, e.g. --loss-arg gamma_beta_ratio=0.3 (repeatable)")
    for p in (sub.choices["dpo"], sub.choices["sft"]):
        p.add_argument("--skip-invalid", action="store_true",
                       help="refuse bad lines of --data (each one reported) instead of stopping at the first")
    p = sub.choices["dpo"]
    p.add_argument("--average-logps", action="store_true", default=None,
                   help="mean instead of sum of response-token log-probs (then raise β ~length×)")
    p.add_argument("--grad-checkpointing", action="store_true", default=None,
                   help="recompute activations in the backward pass (less memory, ~1/3 more compute)")
    for name in ("rlhf", "ppo", "grpo"):
        sub.choices[name].add_argument("--reward", choices=["learned", "gold"],
                                       help="learned: the reward model; gold: RL on r* itself (PPO-GT)")
    p = sub.add_parser("evaluate", help="evaluate rlhf.pt and dpo.pt of a run folder against SFT")
    _common(p)
    p = sub.add_parser("import-gpt2", help="a GPT-2 checkpoint (Hugging Face folder: config.json, model.safetensors "
                                           "or its shards, vocab.json + merges.txt) as the run's SFT model and reference")
    _common(p)
    p.add_argument("--weights", required=True, help="the GPT-2 folder")
    p.add_argument("--tokenizer", help="BPE ranks in tiktoken's file format (default: the folder's vocab.json + "
                                       "merges.txt, or tokenizer.json)")
    from ..interop.gpt2 import POLICIES
    p = sub.add_parser("export", help="a policy of a run folder as a Hugging Face GPT-2 folder (model.safetensors, "
                                      "config.json, tokenizer files) for transformers")
    p.add_argument("--out", required=True, help="the run folder")
    p.add_argument("--policy", required=True, choices=POLICIES, help="which model: OUT/POLICY.pt")
    p.add_argument("--to", required=True, help="the folder to write (it must not exist)")
    p = sub.add_parser("doctor", help="the checks to run before trusting a DPO run, on the SFT model and a "
                                      "preference file (exit code 1 when one fails)")
    _common(p)
    p.add_argument("--data", help="preference file to check (default: OUT/prefs_train.jsonl)")
    p.add_argument("--beta", type=POSITIVE)
    p.add_argument("--average-logps", action="store_true", default=None)
    _grade_parser(sub)
    from ..studies.museum import FAULTS
    for name in ("dpo", "doctor"):
        sub.choices[name].add_argument("--inject", choices=sorted(FAULTS), metavar="FAULT",
                                       help="switch on a classic bug (the museum): " + ", ".join(sorted(FAULTS)))
    return parser


def _grade_parser(sub) -> None:
    p = sub.add_parser("grade", help="exercises: write a piece yourself, graded against the library's "
                                     "(--list; --start DIR writes the stubs)")
    p.add_argument("name", nargs="?", metavar="NAME", help="an exercise (see --list), or all: every file of --dir, "
                                                           "or class: every student's folder of ROOT")
    p.add_argument("root", nargs="?", metavar="ROOT", help="with class: the folder of the students' folders "
                                                           "(writes ROOT/gradebook.csv and gradebook.md)")
    p.add_argument("--list", action="store_true", help="the exercises: name, function, tier, lesson cell")
    p.add_argument("--start", nargs="?", const="exercises", metavar="DIR",
                   help="write the stubs into DIR (default: exercises); existing files are kept")
    p.add_argument("--dir", default="exercises", help="the folder of your files (default: exercises)")
    p.add_argument("--file", help="grade the function in this file instead of DIR's")
    p.add_argument("--train", action="store_true", help="then run your function in the real --fast stage that "
                                                        "uses it, beside the library's run of the same seed")
    p.add_argument("--json", action="store_true", help="with all or class: one JSON table")
    p.add_argument("--exercises", metavar="A,B,C", help="with class: grade these exercises only")
    from ..exercises.grader import TIME_LIMIT
    p.add_argument("--time-limit", type=POSITIVE, default=TIME_LIMIT, metavar="SECONDS",
                   help=f"the time an exercise's cases may take in the child process that runs your code "
                        f"(default {TIME_LIMIT:g}; the child's start, Python and torch, is not counted)")
    p.add_argument("--hunt", type=int, default=0, help="bug-hunt: which hunt (default 0)")
    p.add_argument("--doctor", action="store_true", help="bug-hunt: the doctor's checks on the hunt's setup")
    p.add_argument("--out", default="runs/fast", help="with --train: the --fast run folder (default: runs/fast)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])


DISTRIBUTED = ("sft", "reward-model", "dpo", "rlhf", "ppo", "grpo")  # what torchrun parallelises (distributed.py)


def _overrides(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def main(argv=None) -> int:
    from .runfolder import RunFolderError
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (PreferenceFileError, CheckpointError, RunFolderError, FloatingPointError, ValueError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
    except OSError as e:  # permission denied, disk full, a folder where a file should be ...
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where}: {e.strerror or e} (check the path and its permissions)", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept in the run folder; re-run to continue", file=sys.stderr)
        return 130
    return 2


def _dispatch(args) -> int:
    if args.command == "grade":  # the exercises: a room of their own that only this entry point imports
        from ..exercises.command import grade
        return grade(args)
    from . import pipeline as P
    if args.command == "tokenizer":
        from ..tokenizer import DEFAULT_MERGES, train_default
        ranks = train_default(args.out or DEFAULT_MERGES, args.merges, seed=args.seed)
        print(f"wrote {args.out or DEFAULT_MERGES}: {len(ranks)} tokens ({len(ranks) - 256} merges)")
        return 0
    if args.command == "export":
        from ..interop.gpt2 import export_run
        to = export_run(args.out, args.policy, P.Run.create(args.out, device="cpu").tok, args.to)
        print(f"wrote {to}: {', '.join(sorted(f.name for f in to.iterdir()))}")
        return 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command not in DISTRIBUTED:
        raise ValueError(f"under torchrun minidpo runs {', '.join(DISTRIBUTED)}; run `{args.command}` as "
                         f"`python -m minidpo {args.command}` (one process)")
    out = args.out or ("runs/fast" if args.fast else "runs/default")
    gpt2 = args.command == "import-gpt2"
    run = P.Run.create(out, args.seed, args.fast, args.device, args.dtype, args.force, args.quiet,
                       args.tokenizer if gpt2 else None, "gpt2" if gpt2 else "minidpo")
    if gpt2 and args.tokenizer is None:  # the GPT-2 folder's own vocab.json + merges.txt
        from ..interop.gpt2 import folder_tokenizer
        run.tok = folder_tokenizer(args.weights, run.path("tokenizer.tiktoken"))
    from ..distributed import init_from_env, is_main
    if init_from_env(run.device) and not is_main():
        run.quiet = True  # under torchrun only rank 0 speaks (and writes): the others compute
        sys.stdout = open(os.devnull, "w")
    run.claim_folder()
    name = args.command.replace("-", "_")
    if args.command == "run":
        P.run_all(run, critics=args.all)
    elif args.command == "import-gpt2":
        from ..interop.gpt2 import import_into_run
        import_into_run(run, args.weights)
    elif args.command == "doctor":
        from ..studies.doctor import run_doctor
        from ..studies.museum import inject
        run.require("sft", *(() if args.data else ("prefs",)))
        checks = run_doctor(run, args.data, (lambda s: inject(s, args.inject)) if args.inject else None,
                            **_overrides(args, ["beta", "average_logps"]))
        return 0 if all(c.ok for c in checks) else 1
    elif args.command == "evaluate":
        run.require("sft", "eval_sft", "rlhf", "dpo")
        _print_eval({"rlhf": P.stage_eval_rlhf(run), "dpo": P.stage_eval_dpo(run)})
    elif STAGES[name].study:
        STAGES[name](run)  # a study brings what it needs up to date itself
    else:
        needs = STAGES[name].needs
        if name == "dpo" and args.data and args.val_data:
            needs = ("sft",)  # the user's own pairs: no sampled preference data needed
        if name == "sft" and not args.data:
            extra = [f"--{k.replace('_', '-')}" for k in ("val_data", "epochs", "max_pairs") if getattr(args, k)]
            if extra or args.skip_invalid:
                raise ValueError(f"sft: {(extra or ['--skip-invalid'])[0]} goes with --data (a preference file); "
                                 "the toy's SFT trains on the world's corpus")
        if name == "dpo" and args.max_pairs and not args.data:
            raise ValueError("dpo: --max-pairs goes with --data (a preference file of your own)")
        run.require(*needs)
        _stage_command(run, name, args)
    return 0


def _stage_command(run, name: str, args) -> None:
    from . import pipeline as P
    flags = [f[2:].replace("-", "_") for f, _, _ in STAGE_FLAGS.get(name, [])]
    if name == "sft" and args.data:
        m = P.stage_sft_on_pairs(run, args.data, args.val_data, args.skip_invalid,
                                 **_overrides(args, flags + ["epochs", "max_pairs"]))
        _print_data(m["train_data"])
        v = m["val_data"]
        print(f"held out: {v['pairs']} pairs ({v.get('file') or 'a seeded share of ' + v['held_out_of']})")
        print(f"SFT on the chosen responses: held-out loss {m['val_loss_init']:.3f} -> {m['val_loss']:.3f} "
              f"in {m['steps']} steps; DPO now starts from this model and keeps it as its reference")
    elif name == "sft":
        m = P.stage_sft(run, **_overrides(args, flags))
        e = P.stage_eval_sft(run)
        print(f"SFT: held-out loss {m['val_loss']:.3f}; samples: gold {e['gold_reward']:+.3f} ± {e['gold_std']:.2f} "
              f"(corpus {e['corpus']['gold_reward']:+.3f} ± {e['corpus']['gold_std']:.2f}), fluency {e['fluency']:.3f}")
    elif name == "dpo":
        if args.loss_arg:
            args.loss_args = dict(args.loss_arg)
        settings = _overrides(args, flags + ["loss_type", "loss_args", "average_logps", "grad_checkpointing"])
        if args.inject:  # the museum: one classic bug switched on
            from ..studies.museum import dpo_with_fault
            m = dpo_with_fault(run, args.inject, args.data, args.val_data, **settings)
        else:
            m = P.stage_dpo(run, args.data, args.val_data, args.skip_invalid, args.max_pairs, **settings)
        _print_data(m["train_data"])
        print(f"implicit-reward accuracy on held-out pairs: {m['val_implicit_reward_accuracy']:.3f}")
        if run.tok.kind == "minidpo":  # the gold-reward evaluation exists in the toy world only
            run.require("eval_sft")
            _print_eval({"dpo": P.stage_eval_dpo(run)})
    elif name in ("rlhf", "ppo", "grpo"):
        STAGES[name](run, **_overrides(args, flags + ["reward"]))
        run.require("eval_sft")
        _print_eval({name: STAGES[f"eval_{name}"](run)})
    elif name == "equivalence":
        from . import plots
        res = P.stage_equivalence(run)
        plots.equivalence_figure(res, run.path("equivalence.png"))
        plots.ipo_figure(res["ipo_contrast"], run.path("ipo_contrast.png"))
        print(f"wrote {run.path('equivalence.json')}, equivalence.png, ipo_contrast.png")
    else:
        STAGES[name](run, **_overrides(args, flags))


def _print_data(d: dict) -> None:
    """What was read of a preference file: nothing is dropped without a line saying so."""
    sampled = f" (a seeded sample: {d['sampled']})" if "sampled" in d else ""
    print(f"{d['file']}: {d['read']} pairs read{sampled}, {d['truncated']} truncated to the context; "
          f"refused lines: {len(d['refused'])}; blank lines: {d['blank_lines']}")
    for line in d["refused"]:
        print(f"   refused {line}")


def _print_eval(results: dict) -> None:
    for name, s in results.items():
        print(f"{name}: gold {s['gold_reward']:+.3f}, win rate vs SFT {s['win_rate_vs_sft']:.3f}, "
              f"KL {s['kl_to_ref']:.2f}, fluency {s['fluency']:.3f}, unique {s['unique_frac']:.3f}")
        for sample in s["samples"][:3]:
            print(f"   {sample['prompt']} -> {sample['response']}  (gold {sample['gold']:+.1f})")
