"""The README's measured tables from a run folder: `python -m minidpo.tools.headline --out runs/default`
writes data/headline.json (the numbers, committed) from the folder's study JSON and rewrites every
`<!-- headline:NAME -->` block of README.md from it. `--check` writes nothing and exits 1 when the
committed file differs from the folder's numbers (with --out) or a README table differs from the
committed file. See `harness.headline`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..harness import headline

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "data" / "headline.json"
README = ROOT / "README.md"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidpo.tools.headline", description=__doc__.split("\n")[0])
    p.add_argument("--out", help="the run folder of the long studies (default: only compare the README "
                                 "with the committed numbers)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 on any difference")
    args = p.parse_args(argv)
    committed = json.loads(COMMITTED.read_text()) if COMMITTED.is_file() else None
    if args.out:
        if not Path(args.out).is_dir():
            print(f"error: --out {args.out} is not a folder", file=sys.stderr)
            return 2
        fresh = headline.extract(args.out)
        if args.check and fresh != committed:
            print(f"{COMMITTED} differs from the numbers in {args.out}")
            return 1
        if not args.check:
            COMMITTED.write_text(json.dumps(fresh, indent=1, ensure_ascii=False) + "\n")
            print(f"wrote {COMMITTED} (sections: {', '.join(k for k in fresh if k not in ('schema', 'run'))})")
        committed = fresh
    if committed is None:
        print(f"error: no {COMMITTED}: run with --out RUN_FOLDER after the long studies", file=sys.stderr)
        return 2
    rendered = headline.tables(committed)
    readme = README.read_text()
    missing = [name for name in rendered if name not in headline.blocks(readme)]
    if args.check:
        bad = headline.stale(readme, rendered)
        for name in bad:
            print(f"README.md: table '{name}' " + ("has no <!-- headline:NAME --> block" if name in missing
                                                  else "differs from the committed numbers"))
        return 1 if bad else 0
    README.write_text(headline.sync(readme, rendered))
    print(f"README.md: {len(rendered) - len(missing)} tables rewritten"
          + (f"; no block yet for {', '.join(missing)} (add `<!-- headline:NAME -->` and "
             "`<!-- /headline:NAME -->` lines where each belongs, then run this again)" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
