"""How two methods are compared in this project: on the reward-vs-KL frontier, at the same KL, paired
by seed, with an interval for the difference.

- `frontier(points, start)`: the upper concave hull of (KL, gold) points and the start (the SFT
  model at KL 0), made non-decreasing. Why a hull: a policy that answers with π1 with probability λ
  and π2 otherwise (one mixture per response) earns λ·gold1 + (1 − λ)·gold2, and KL is convex, so
  its KL is at most λ·KL1 + (1 − λ)·KL2: every point on the chord between two runs is reachable.
  Why non-decreasing: a KL budget need not be spent. So adding a run can raise the frontier, never
  lower it; a running maximum joined by straight lines (a Pareto envelope) can fall.
- `at_kl(hull, kl)`: the frontier read at `kl` (gold, fluency), None beyond the largest KL the
  points reached (never extrapolated).
- `paired(a, b)`: a − b per seed (the same seed: the same pairs, the same reward model, the same
  evaluation prompts), its mean, the standard deviation across seeds, and a 95 % Student-t
  interval of the mean. The verdict: "above" or "below" when the interval excludes 0, "no
  measurable difference" when it covers 0, "one seed" when there is no spread to judge by.
  With three seeds the t factor is 4.30, not 2: few seeds, wide intervals (Agarwal et al. 2021).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

Point = tuple[float, float, float]  # (kl, gold, fluency)


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def frontier(points, start: Point) -> list[Point]:
    """The frontier of `points` ((kl, gold, fluency) tuples, or dicts with `kl_to_ref`, `gold_reward`,
    `fluency`) from `start`: the vertices of their upper concave hull up to the best gold reward, then
    flat to the largest KL any point reached. Points at KL ≤ 0 (an estimate's noise) are skipped."""
    pts = [_as_point(p) for p in points]
    pts = sorted({p for p in pts if p[0] > 0} | {tuple(start)})
    best = max(pts, key=lambda p: (p[1], -p[0]))         # the highest gold, at its smallest KL
    hull: list[Point] = []
    for p in (q for q in pts if q[0] <= best[0]):         # Andrew's monotone chain, upper side
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    far = max(p[0] for p in pts)
    if far > best[0]:                                     # a budget need not be spent: flat from the best
        hull.append((far, best[1], best[2]))
    return hull


def _as_point(p) -> Point:
    if isinstance(p, dict):
        return (float(p["kl_to_ref"]), float(p["gold_reward"]), float(p.get("fluency", math.nan)))
    kl, gold, *rest = p
    return (float(kl), float(gold), float(rest[0]) if rest else math.nan)


def at_kl(hull: list[Point], kl: float) -> tuple[float, float] | None:
    """(gold, fluency) on the frontier at `kl`, linear between its vertices; None beyond its end."""
    if len(hull) == 1:
        return (hull[0][1], hull[0][2]) if kl == hull[0][0] else None
    for (k0, g0, f0), (k1, g1, f1) in zip(hull, hull[1:]):
        if k0 <= kl <= k1:
            w = (kl - k0) / (k1 - k0)
            return g0 + w * (g1 - g0), f0 + w * (f1 - f0)
    return None


# --- paired differences over seeds --------------------------------------------------------------------
def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile: P(|T| ≤ t) = level for T with `df` degrees of freedom, by
    bisection on the density integrated with Simpson's rule (no scipy)."""
    c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def mass(t: float, n: int = 2000) -> float:  # P(0 ≤ T ≤ t)
        h = t / n
        f = [math.exp(c - (df + 1) / 2 * math.log1p((i * h) ** 2 / df)) for i in range(n + 1)]
        return h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
    lo, hi = 0.0, 1000.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 2 * mass(mid) < level else (lo, mid)
    return (lo + hi) / 2


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = list(values)
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, std


@dataclass
class Difference:
    """a − b, paired by seed."""
    diffs: list[float]
    mean: float
    std: float
    low: float = field(default=math.nan)   # the 95 % interval of the mean (NaN with one seed)
    high: float = field(default=math.nan)

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def verdict(self) -> str:
        """"above", "below", "no measurable difference" or "one seed"."""
        if self.n < 2:
            return "one seed"
        if self.low > 0:
            return "above"
        if self.high < 0:
            return "below"
        return "no measurable difference"

    def describe(self, unit: str = "") -> str:
        """e.g. "+0.48 (95 % interval +0.36 … +0.60, 3 seeds)"."""
        if self.n < 2:
            return f"{self.mean:+.3f}{unit} (one seed: no spread to judge by)"
        return (f"{self.mean:+.3f}{unit} (95 % interval {self.low:+.3f} … {self.high:+.3f}, "
                f"{self.n} seeds{', fewer than 3' if self.n < 3 else ''})")

    def as_dict(self) -> dict:
        return {"gap_mean": self.mean, "gap_std": self.std, "n": self.n, "gaps": self.diffs,
                "low": self.low, "high": self.high, "verdict": self.verdict,
                "beyond_spread": self.verdict in ("above", "below")}


def paired(a, b) -> Difference:
    """a − b seed by seed (the i-th value of each is the same seed; a None on either side drops that
    seed from both), with a 95 % Student-t interval of the mean difference."""
    diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    if not diffs:
        raise ValueError("paired: no seed has a value on both sides")
    mean, std = mean_std(diffs)
    if len(diffs) < 2:
        return Difference(diffs, mean, std)
    half = t_quantile(len(diffs) - 1) * std / math.sqrt(len(diffs))
    return Difference(diffs, mean, std, mean - half, mean + half)
