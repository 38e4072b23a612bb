"""`python -m minidpo COMMAND`: every stage on its own, or `run` for all of them.

Each command works in a run folder (`--out`, default runs/default, or runs/fast with --fast): it
reads what earlier stages wrote there and writes its own outputs beside them. Errors in the input (a bad preference file, a
missing or mismatched checkpoint, an impossible flag value) end with one clear line and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from .checkpoint import CheckpointError
from .preferences import PreferenceFileError


def _common(p: argparse.ArgumentParser, out_default: str | None = None):
    p.add_argument("--out", default=out_default,
                   help=f"run folder (default: {out_default or 'runs/default, or runs/fast with --fast'})")
    p.add_argument("--seed", type=int, default=0, help="fixes every number on CPU (default: 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto = cuda, then mps, then cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="autocast dtype; auto = bf16 on CUDA, fp32 elsewhere")
    p.add_argument("--fast", action="store_true", help="tiny configs: the whole stage in seconds")
    p.add_argument("--force", action="store_true", help="redo stages whose outputs already exist")
    p.add_argument("--quiet", action="store_true", help="no per-step progress lines")


def _positive(kind):
    def parse(text):
        v = kind(text)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v
    return parse


def _probability(text):
    v = float(text)
    if not 0 <= v < 0.5:
        raise argparse.ArgumentTypeError(f"must be in [0, 0.5), got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from .losses import LOSSES
    parser = argparse.ArgumentParser(prog="python -m minidpo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="every stage, figures, summary.json and report.md")
    _common(p)

    p = sub.add_parser("tokenizer", help="retrain the BPE merges shipped in data/")
    p.add_argument("--out", default=None, help="merges file (default: data/tokenizer.tiktoken)")
    p.add_argument("--merges", type=_positive(int), default=512)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("sft", help="supervised fine-tuning on the world's corpus")
    _common(p)
    p.add_argument("--steps", type=_positive(int))
    p.add_argument("--lr", type=_positive(float))
    p.add_argument("--batch-size", type=_positive(int))

    p = sub.add_parser("prefs", help="sample pairs from the SFT model, label them by Bradley–Terry")
    _common(p)

    p = sub.add_parser("dpo", help="DPO from the SFT checkpoint on a preference file")
    _common(p)
    p.add_argument("--data", help="JSONL with prompt/chosen/rejected (default: OUT/prefs_train.jsonl)")
    p.add_argument("--val-data", help="held-out JSONL (default: OUT/prefs_val.jsonl)")
    p.add_argument("--beta", type=_positive(float))
    p.add_argument("--lr", type=_positive(float))
    p.add_argument("--epochs", type=_positive(int))
    p.add_argument("--batch-size", type=_positive(int))
    p.add_argument("--loss-type", choices=sorted(LOSSES))
    p.add_argument("--label-smoothing", type=_probability)
    p.add_argument("--skip-invalid", action="store_true",
                   help="refuse bad lines of --data (each one reported) instead of stopping at the first")
    p.add_argument("--average-logps", action="store_true", default=None,
                   help="mean instead of sum of response-token log-probs (then raise β ~length×)")

    p = sub.add_parser("reward-model", help="Bradley–Terry reward model on the preference pairs")
    _common(p)
    p.add_argument("--lr", type=_positive(float))
    p.add_argument("--epochs", type=_positive(int))

    p = sub.add_parser("rlhf", help="REINFORCE with a KL penalty against the reward model")
    _common(p)
    p.add_argument("--beta", type=float)
    p.add_argument("--steps", type=_positive(int))
    p.add_argument("--lr", type=_positive(float))
    p.add_argument("--reward", choices=["learned", "gold"])

    p = sub.add_parser("evaluate", help="evaluate rlhf.pt and dpo.pt of a run folder against SFT")
    _common(p)

    p = sub.add_parser("equivalence", help="the exact bandit lab: DPO = RLHF = closed form")
    _common(p, "runs/equivalence")

    p = sub.add_parser("frontier", help="reward-vs-KL frontier of DPO and RLHF over several β")
    _common(p)

    for name, text in (("overoptimisation", "best-of-n and β=0 RL against the learned reward: gold peaks, proxy climbs"),
                       ("diversity", "gold reward, entropy and unique responses against β, DPO and RLHF"),
                       ("cost", "the cost table of the RLHF road against the DPO road (after `run`)"),
                       ("failure-modes", "DPO's falling log-probs and a table of remedies"),
                       ("online-dpo", "rounds of fresh on-policy pairs vs offline DPO at equal labels")):
        p = sub.add_parser(name, help=text)
        _common(p)
    p = sub.choices["run"]
    p.add_argument("--all", action="store_true",
                   help="also the critics' studies (over-optimisation, diversity, cost, failure modes, online DPO)")
    return parser


def _overrides(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (PreferenceFileError, CheckpointError, FileNotFoundError, FloatingPointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept in the run folder; re-run to continue", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    from . import pipeline as P
    if args.command == "tokenizer":
        from .tokenizer import DEFAULT_MERGES, train_default
        ranks = train_default(args.out or DEFAULT_MERGES, args.merges, seed=args.seed)
        print(f"wrote {args.out or DEFAULT_MERGES}: {len(ranks)} tokens ({len(ranks) - 256} merges)")
        return 0
    out = args.out or ("runs/fast" if args.fast else "runs/default")
    run = P.Run.create(out, args.seed, args.fast, args.device, args.dtype, args.force, args.quiet)
    run.claim_folder()
    if args.command == "run":
        P.run_all(run, critics=args.all)
    elif args.command == "sft":
        m = P.stage_sft(run, **_overrides(args, ["steps", "lr", "batch_size"]))
        e = P.stage_eval_sft(run)
        print(f"SFT: held-out loss {m['val_loss']:.3f}; samples: gold {e['gold_reward']:+.3f} ± {e['gold_std']:.2f} "
              f"(corpus {e['corpus']['gold_reward']:+.3f} ± {e['corpus']['gold_std']:.2f}), fluency {e['fluency']:.3f}")
    elif args.command == "prefs":
        P.stage_prefs(run)
    elif args.command == "dpo":
        run.force = True
        m = P.stage_dpo(run, args.data, args.val_data, args.skip_invalid,
                        **_overrides(args, ["beta", "lr", "epochs", "batch_size", "loss_type",
                                            "label_smoothing", "average_logps"]))
        d = m["train_data"]
        print(f"{d['file']}: {d['read']} pairs read, {d['truncated']} truncated to the context; "
              f"refused lines: {len(d['refused'])}; blank lines: {d['blank_lines']}")
        for line in d["refused"]:
            print(f"   refused {line}")
        _print_eval(P.stage_evaluate(run, ("dpo",)))
        print(f"implicit-reward accuracy on held-out pairs: {m['val_implicit_reward_accuracy']:.3f}")
    elif args.command == "reward-model":
        run.force = True
        P.stage_reward_model(run, **_overrides(args, ["lr", "epochs"]))
    elif args.command == "rlhf":
        run.force = True
        P.stage_rlhf(run, **_overrides(args, ["beta", "steps", "lr", "reward"]))
        _print_eval(P.stage_evaluate(run, ("rlhf",)))
    elif args.command == "evaluate":
        _print_eval(P.stage_evaluate(run))
    elif args.command == "equivalence":
        from . import plots
        run.force = True
        res = P.stage_equivalence(run)
        plots.equivalence_figure(res, run.path("equivalence.png"))
        plots.ipo_figure(res["ipo_contrast"], run.path("ipo_contrast.png"))
        print(f"wrote {run.path('equivalence.json')}, equivalence.png, ipo_contrast.png")
    elif args.command == "frontier":
        from .frontier import run_frontier
        run_frontier(run)
    elif args.command in P.CRITICS:
        P.run_critic(run, args.command)
    return 0


def _print_eval(results: dict) -> None:
    for name, s in results.items():
        print(f"{name}: gold {s['gold_reward']:+.3f}, win rate vs SFT {s['win_rate_vs_sft']:.3f}, "
              f"KL {s['kl_to_ref']:.2f}, fluency {s['fluency']:.3f}, unique {s['unique_frac']:.3f}")
        for sample in s["samples"][:3]:
            print(f"   {sample['prompt']} -> {sample['response']}  (gold {sample['gold']:+.1f})")


def tutorial_run(description: str):
    """The Run a tutorial script works in: `--fast`, `--out`, `--seed`, `--device` from the command
    line (unknown arguments, such as a notebook kernel's, are ignored)."""
    from .pipeline import Run
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=None, help="run folder (default: runs/tutorial, or runs/tutorial-fast)")
    p.add_argument("--fast", action="store_true", help="tiny configs, seconds instead of minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args, _ = p.parse_known_args()
    out = args.out or ("runs/tutorial-fast" if args.fast else "runs/tutorial")
    run = Run.create(out, seed=args.seed, fast=args.fast, device=args.device)
    run.claim_folder()
    return run
