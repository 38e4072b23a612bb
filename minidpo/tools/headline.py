"""The measured tables of the README and docs/ from a run folder: `python -m minidpo.tools.headline
--out runs/default` writes data/headline.json (the pipeline's numbers and the loss bench's) and
data/studies/frontier.json and ablation.json (the long studies' results, with the frontier's points)
from the folder, and rewrites every `<!-- headline:NAME -->` block of README.md and docs/*.md from
them (each table is in exactly one of those pages). `--check` writes nothing and exits 1 when a
committed file differs from the folder's numbers (with --out) or a page's table differs from the
committed files, naming the page and the table. See `harness.headline`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..harness import headline

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "data" / "headline.json"
STUDIES = ROOT / "data" / "studies"  # the lessons' fallback (`harness.tutorial.shipped_study`) reads here


def _dump(value) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False) + "\n"


def committed_studies() -> dict:
    """{name: result} of the long studies committed in data/studies/ (`headline.STUDIES`)."""
    return {name: json.loads((STUDIES / Path(path).name).read_text())
            for name, path in headline.STUDIES.items() if (STUDIES / Path(path).name).is_file()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidpo.tools.headline", description=__doc__.split("\n")[0])
    p.add_argument("--out", help="the run folder of the long studies (default: only compare the pages' "
                                 "tables with the committed numbers)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 on any difference")
    args = p.parse_args(argv)
    committed = json.loads(COMMITTED.read_text()) if COMMITTED.is_file() else None
    studies = committed_studies()
    if args.out:
        if not Path(args.out).is_dir():
            print(f"error: --out {args.out} is not a folder", file=sys.stderr)
            return 2
        fresh, fresh_studies = headline.extract(args.out), headline.studies(args.out)
        kept = [k for k in (committed or {}) if k not in fresh]  # a section the folder lacks stays as committed
        fresh = {**fresh, **{k: committed[k] for k in kept}}
        if args.check:
            differ = ([str(COMMITTED)] if fresh != committed else []) + [
                str(STUDIES / Path(headline.STUDIES[name]).name) for name in fresh_studies
                if fresh_studies[name] != studies.get(name)]
            if differ:
                print(f"{', '.join(differ)} differ{'s' if len(differ) == 1 else ''} from the numbers in {args.out}")
                return 1
        else:
            COMMITTED.write_text(_dump(fresh))
            STUDIES.mkdir(exist_ok=True)
            for name, result in fresh_studies.items():
                (STUDIES / Path(headline.STUDIES[name]).name).write_text(_dump(result))
            print(f"wrote {COMMITTED.relative_to(ROOT)} (sections: {', '.join(k for k in fresh if k not in ('schema', 'run'))}"
                  + (f"; kept as committed, not in {args.out}: {', '.join(kept)}" if kept else "") + ")"
                  + "".join(f", {(STUDIES / Path(headline.STUDIES[n]).name).relative_to(ROOT)}" for n in fresh_studies))
        committed, studies = fresh, {**studies, **fresh_studies}
    if committed is None:
        print(f"error: no {COMMITTED}: run with --out RUN_FOLDER after the long studies", file=sys.stderr)
        return 2
    rendered = headline.tables(committed, studies)
    pages = {str(p.relative_to(ROOT)): p for p in headline.pages(ROOT)}
    texts = {name: p.read_text(encoding="utf-8") for name, p in pages.items()}
    bad = headline.problems(texts, rendered)
    if args.check:
        for line in bad:
            print(line)
        return 1 if bad else 0
    rewritten = {}
    for name, text in texts.items():
        synced = headline.sync(text, rendered)
        if n := sum(1 for table in rendered if table in headline.blocks(text)):
            rewritten[name] = n
        if synced != text:
            pages[name].write_text(synced, encoding="utf-8")
    misplaced = [line for line in bad if "differs from the committed numbers" not in line]  # none or two blocks
    print(f"{sum(rewritten.values())} tables rewritten ({', '.join(f'{k}: {n}' for k, n in rewritten.items())})"
          + "".join(f"\n{line}" for line in misplaced)
          + ("\n(each table wants `<!-- headline:NAME -->` and `<!-- /headline:NAME -->` lines in the one page "
             "where it belongs; then run this again)" if misplaced else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
