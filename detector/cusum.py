"""Bernoulli / binomial CUSUM with an exactly calibrated threshold.

Why a CUSUM: Page's (1954, *Biometrika* 41:100-115) statistic W_t = max(0, W_{t-1} + LLR_t) is exactly optimal
for Lorden's worst-case delay (Moustakides 1986), so its zero-state ARL1 at a given ARL0 is the physical lower
bound on detection delay (anchors.md, section C.4).  Per message the log-likelihood ratio of rate p1 against p0
is +a for an event and -b for a non-event; per window of n messages with x events it is x*a - (n-x)*b, which
aggregates the per-message chart exactly (Reynolds & Stoumbos 1999, *J. Quality Technology* 31(1):87-108).

Why an exact threshold: the Wald bound ARL0 >= e^h is very conservative for rare events (h = ln 1e7 gives an
actual ARL0 of 1.6e10 for complaints 0.1% -> 0.3%), which wastes delay.  We compute the run length exactly with
the Brook & Evans (1972, *Biometrika* 59(3):539-549) lattice Markov chain:

* lattice unit u = b / r, down-step r units for a non-event, up-step m = round(r*a/b) units for an event,
  reflection at 0 and absorption at H = ceil(h/u) units;
* the zero-state ARL is L[0] of (I - Q) L = 1 over the transient states 0..H-1.

With r = 1 this is the chain of anchors.md C.5/appendix.  The only approximation is the rounding of a/b to
m/r.  A relative error eps in a shifts ln ARL0 by about h*p1*a*eps/I1 (22*eps for the complaint anchor, 31*eps
for the bounce anchor) and the calibrated ARL1 by roughly a tenth of that, so when a/b is far from an integer
(2% -> 5%: a/b = 29.47, where r = 1 moves the delay bound by 4.5%) we refine the lattice: r is the smallest
integer <= 32 with |m/r - a/b| <= 1e-3 * a/b.  r = 1 always qualifies once a/b >= 500 (rare events).

Solving (I - Q) L = 1:

* :func:`arl_sparse` builds Q and calls ``scipy.sparse.linalg.spsolve``: the reference method, used in tests.
* :func:`arl` solves the *same* system faster.  For r = 1 the chain only ever moves down one unit, so with
  y = H-1-W the equations g(y) = 1 + q*g(min(y+1, H-1)) + p*g(y-m), g(<0) = 0, run forward from the single
  unknown g(0) (the discrete "scale function" of a skip-free walk) in O(H) vectorised work, and the equation
  at the top closes it.  The forward pass does not depend on H, so :func:`calibrate_h` gets ARL0 at every
  lattice level from one pass.  This matters for rare events: p0 = 0.1% gives H ~ 5,000 levels with m = 548
  and a banded LU would fill H*m entries.  But the closing equation cancels: when p*(m+1) > 1 (W drifts
  up) a root of q*z^(m+1) - z^m + p above 1 makes g grow like z^y (0.01 -> 0.015, ARL0 = 4e7, p = 0.05 gave
  -1.3e31 for an ARL of 676), and at any p a huge ARL is a difference of nearly equal numbers (error
  ~ eps*ARL).  So each result comes with its cancellation factor cond (:meth:`_ForwardRows.arl_cond_at`;
  measured error <= 1e2*eps*cond) and above cond = 1e7 the *ladder* solve is used: Gaussian elimination of
  the same system from the absorbing end (y = 0, 1, ...) without pivoting stays bidiagonal, its pivots are
  the climbing probabilities A_y = P(reach y+1 before absorption | at y) = q / (1 - p*prod(A over the m
  levels below)), and ARL = (1 + (p/q)*S) / (p*(1 - prod A)) with S a positive sum.  Accumulating 1 - prod A
  as a sum too, it never subtracts, so its relative error is O(H*eps) for every p and ARL.  It is a scalar
  loop (O(1) per level via a sliding window over m levels) several times slower than the vectorised pass,
  hence the hybrid rather than the ladder alone: at p0 (calibrate_h) and near p1 the forward pass is
  accurate and stays in use.
  For r > 1 the forward recursion is numerically unstable (r - 1 spurious modes grow), so the system goes
  to LAPACK's banded solver (lower band r, upper band m); refinement only happens when a/b < 500, where b is
  large and the lattice small.
  Tests check both solvers against spsolve to 1e-6 relative on a grid of rates, the ladder against exact
  decimal arithmetic where spsolve itself loses digits (ARL >~ 1e10), and both against Monte Carlo.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
from scipy.linalg import solve_banded

__all__ = [
    "llr_weights",
    "lattice",
    "arl",
    "arl_sparse",
    "calibrate_h",
    "delay_bound",
    "cusum_step",
    "BernoulliCusum",
]

_MAX_RESOLUTION = 32
_REL_TOL_A = 1e-3
_MAX_H_NATS = 200.0  # e^200 run lengths would lose all precision; no real ARL0 target is near this
_FORWARD_MAX_COND = 1e7  # r = 1 forward pass trusted up to this cancellation factor (error <~ 1e2*eps*cond)
_FORWARD_ROUGH_COND = 1e12  # ... and to a few % up to this one (enough to tell 2x above/below a target)


def llr_weights(p0: float, p1: float) -> tuple[float, float]:
    """Return (a, b): per-message LLR is +a for an event, -b for a non-event (Page 1954; anchors C.1)."""
    p0 = float(p0)
    p1 = float(p1)
    if not (math.isfinite(p0) and math.isfinite(p1)) or not (0.0 < p0 < p1 < 1.0):
        raise ValueError(f"need 0 < p0 < p1 < 1, got p0={p0!r}, p1={p1!r}")
    a = math.log(p1 / p0)
    b = math.log1p(-p0) - math.log1p(-p1)
    return a, b


def lattice(p0: float, p1: float, resolution: int | None = None) -> tuple[float, int, int]:
    """Return (unit, m, r): the Brook-Evans lattice used for (p0, p1).

    unit = b/r nats, a non-event moves down r units, an event moves up m = round(r*a/b) units.  With
    ``resolution=None`` r is the smallest integer <= 32 whose rounding error |m/r - a/b| / (a/b) is <= 2e-4
    (or the best one if none is), see the module docstring.
    """
    a, b = llr_weights(p0, p1)
    ratio = a / b
    if resolution is None:
        best_r, best_err = 1, math.inf
        for r in range(1, _MAX_RESOLUTION + 1):
            m = max(1, round(r * ratio))
            err = abs(m - r * ratio) / (r * ratio)
            if err < best_err - 1e-15:
                best_r, best_err = r, err
            if err <= _REL_TOL_A:
                break
        r = best_r
    else:
        r = int(resolution)
        if r < 1 or r != resolution:
            raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    m = max(1, round(r * ratio))
    return b / r, m, r


def _check_p(p: float) -> float:
    p = float(p)
    if not (math.isfinite(p) and 0.0 < p < 1.0):
        raise ValueError(f"true rate p must be in (0, 1), got {p!r}")
    return p


def _check_h(h: float) -> float:
    h = float(h)
    if not math.isfinite(h) or h <= 0.0:
        raise ValueError(f"threshold h must be a positive finite number of nats, got {h!r}")
    if h > _MAX_H_NATS:
        raise ValueError(f"threshold h={h!r} nats is beyond the {_MAX_H_NATS} nats this solver supports")
    return h


def _levels(h: float, unit: float) -> int:
    """Absorbing lattice level H = ceil(h/unit), robust to h having been computed as H*unit."""
    return max(1, math.ceil(h / unit - 1e-9))


def arl_sparse(p: float, p0: float, p1: float, h: float, resolution: int | None = None) -> float:
    """Zero-state ARL by the Brook & Evans chain solved with ``scipy.sparse.linalg.spsolve`` (reference).

    Memory and time grow like H*m (LU fill of the band); fine for tests and small lattices.
    """
    p = _check_p(p)
    h = _check_h(h)
    unit, m, r = lattice(p0, p1, resolution)
    return _sparse_levels(p, m, r, _levels(h, unit))


def _sparse_levels(p: float, m: int, r: int, levels: int) -> float:
    i = np.arange(levels)
    up = i + m
    keep = up < levels  # an event from i either stays transient or is absorbed (contributes nothing)
    rows = np.concatenate([i[keep], i])
    cols = np.concatenate([up[keep], np.maximum(i - r, 0)])
    vals = np.concatenate([np.full(int(keep.sum()), p), np.full(levels, 1.0 - p)])
    q_mat = sp.csc_matrix((vals, (rows, cols)), shape=(levels, levels))
    system = (sp.identity(levels, format="csc") - q_mat).tocsc()
    sol = spl.spsolve(system, np.ones(levels), permc_spec="NATURAL")
    return float(np.atleast_1d(sol)[0])


class _ForwardRows:
    """Affine coefficients g(y) = c(y) + D(y).u of the reflected chain, for y = 0..ymax (see module doc).

    Row y holds [c(y), D(y)]; rows before 0 are zero (absorbed).  Filled chunk-wise: within a chunk of length
    <= m+r every g(y-m-r) term is already known, so each residue class mod r is a first-order recursion that
    numpy solves with a cumulative sum.
    """

    def __init__(self, p: float, m: int, r: int, ymax: int):
        self.p, self.m, self.r = p, m, r
        q = 1.0 - p
        pad = m + r
        rows = np.zeros((pad + ymax + 1, r + 1))
        rows[pad + np.arange(r), 1 + np.arange(r)] = 1.0  # g(i) = u_i for i < r
        e0 = np.zeros(r + 1)
        e0[0] = 1.0
        steps = max(1, (m + r) // r)  # chain steps per residue per chunk; chunk length r*steps <= m + r
        t = r  # next target y
        while t <= ymax:
            n = min(r * steps, ymax - t + 1)
            k_count = -(-n // r)
            full = k_count * r
            src = pad + t + np.arange(full) - r - m  # all < pad + t: already filled (or zero padding)
            kern = ((-e0[None, :] - p * rows[src]) / q).reshape(k_count, r, r + 1)
            scale = q ** np.arange(1, k_count + 1)  # q^(k+1) for chain step k
            acc = np.cumsum(kern * scale[:, None, None], axis=0)
            base = rows[pad + t - r : pad + t]  # g(t - r + j): start of residue chain j
            block = (base[None, :, :] + acc) / scale[:, None, None]
            rows[pad + t : pad + t + n] = block.reshape(full, r + 1)[:n]
            t += n
        self._rows = rows
        self._pad = pad
        self.ymax = ymax

    def row(self, y):
        return self._rows[self._pad + np.asarray(y)]

    def arl_at(self, levels: int) -> float:
        """Zero-state ARL for absorption at `levels` (needs r <= levels-1 <= ymax)."""
        p, m, r = self.p, self.m, self.r
        q = 1.0 - p
        top = levels - 1  # y of W = 0
        ys = np.arange(top - r + 1, top + 1)
        rows_y = self.row(ys)
        rows_m = self._rows[self._pad + ys - m]  # zero padding below y = 0 (absorbed)
        rtop = self.row(top)
        lhs = rows_y - q * rtop[None, :] - p * rows_m
        mat = lhs[:, 1:]
        rhs = 1.0 - lhs[:, 0]
        u = np.linalg.solve(mat, rhs)
        return float(rtop[0] + rtop[1:] @ u)

    def arl_cond_at(self, levels: int) -> tuple[float, float]:
        """For r = 1: (ARL, cond) with the closing equation written out; cond multiplies the cancellation
        factors of its three sums, so eps*cond estimates the relative error (inf when it is meaningless)."""
        p, m = self.p, self.m
        top = levels - 1
        c_t, d_t = self.row(top)
        c_m, d_m = self._rows[self._pad + top - m]  # zero padding when top - m < 0
        with np.errstate(all="ignore"):
            mat = p * (d_t - d_m)
            rhs = 1.0 - p * (c_t - c_m)
            u = rhs / mat
            value = c_t + d_t * u
            cond = (
                p * (abs(d_t) + abs(d_m)) / abs(mat)
                * (1.0 + p * (abs(c_t) + abs(c_m))) / abs(rhs)
                * (abs(c_t) + abs(d_t * u)) / abs(value)
            )
        if not (math.isfinite(value) and math.isfinite(cond) and value > 0.0):
            cond = math.inf
        return float(value), float(cond)


class _LadderRows:
    """Stable r = 1 solve (see module doc): elimination from the absorbing end, y = 0, 1, ..., no pivoting.

    For each y it records the aggregate of the m levels below y, window [y-m, y-1] (levels < 0 count as
    A = 0: a jump there is absorbed): ``one_minus`` = 1 - prod A_j and ``acc`` = sum_k prod_{j<=k} A_j beta_k,
    combined as (P, C, S)_left + (P, C, S)_right = (P_l*P_r, C_l + P_l*C_r, S_l + P_l*S_r): only products
    and sums of non-negative numbers.  The window is the suffix of the previous block of m levels plus the
    prefix of the current one, so each level costs O(1).  Like the forward pass it does not depend on H.
    """

    def __init__(self, p: float, m: int, ymax: int):
        self.p = p
        q = 1.0 - p
        pq = p / q
        n = ymax + 1
        one_minus = [0.0] * n
        acc = [0.0] * n
        el_a = [0.0] * m  # current block: A_j, 1 - A_j, A_j*beta_j
        el_c = [0.0] * m
        el_s = [0.0] * m
        suf_p = [0.0] * m  # previous block's suffix aggregates; before y = 0 everything is absorbed
        suf_c = [1.0] * m
        suf_s = [0.0] * m
        pre_p, pre_c, pre_s = 1.0, 0.0, 0.0  # current block's prefix aggregate
        k = 0
        for y in range(n):
            if k == m:  # block complete: its suffix aggregates serve the next m levels
                sp_, sc, ss = 1.0, 0.0, 0.0
                for j in range(m - 1, -1, -1):
                    a = el_a[j]
                    sc = el_c[j] + a * sc
                    ss = el_s[j] + a * ss
                    sp_ *= a
                    suf_p[j] = sp_
                    suf_c[j] = sc
                    suf_s[j] = ss
                pre_p, pre_c, pre_s = 1.0, 0.0, 0.0
                k = 0
            w_p = suf_p[k]
            c = suf_c[k] + w_p * pre_c  # 1 - prod A over [y-m, y-1]
            s_ = suf_s[k] + w_p * pre_s
            one_minus[y] = c
            acc[y] = s_
            d = q + p * c  # pivot 1 - p*prod A, written as a sum
            a = q / d
            a_beta = a * (1.0 + pq * s_)
            pre_c += pre_p * (p * c / d)  # 1 - A = p*c/d
            pre_s += pre_p * a_beta
            pre_p *= a
            el_a[k] = a
            el_c[k] = p * c / d
            el_s[k] = a_beta
            k += 1
        self._one_minus = one_minus
        self._acc = acc

    def arl_at(self, levels: int) -> float:
        """Zero-state ARL for absorption at `levels` (levels-1 <= ymax); the top pivot is p*(1 - prod A)."""
        p = self.p
        top = levels - 1
        return (1.0 + p / (1.0 - p) * self._acc[top]) / (p * self._one_minus[top])


class _R1Rows:
    """ARL at every level <= ymax+1 for r = 1: the forward pass where it is well conditioned, else the ladder.

    Neither pass depends on H (the ladder one is only run when needed), so :func:`arl` and :func:`calibrate_h`
    give the same number for the same level."""

    def __init__(self, p: float, m: int, ymax: int):
        self.p, self.m, self.ymax = p, m, ymax
        with np.errstate(all="ignore"):  # far above p1 the pass overflows; arl_cond_at then reports inf
            self._forward = _ForwardRows(p, m, 1, ymax)
        self._ladder = None

    def arl_at(self, levels: int) -> float:
        value, cond = self._forward.arl_cond_at(levels)
        if cond <= _FORWARD_MAX_COND:
            return value
        return self._ladder_at(levels)

    def reaches(self, levels: int, target: float) -> bool:
        """``arl_at(levels) >= target``, without the ladder pass when the forward value, although not accurate
        to 1e-6, is off from the target by far more than its error (~1e2*eps*cond <= 0.03): calibrate_h's
        first bracket sits where the Wald bound puts it, often ARL0 ~ 1e10 for rare events."""
        value, cond = self._forward.arl_cond_at(levels)
        if cond <= _FORWARD_MAX_COND:
            return value >= target
        if cond <= _FORWARD_ROUGH_COND:
            if value >= 2.0 * target:
                return True
            if value <= 0.5 * target:
                return False
        return self._ladder_at(levels) >= target

    def _ladder_at(self, levels: int) -> float:
        if self._ladder is None:
            self._ladder = _LadderRows(self.p, self.m, self.ymax)
        return self._ladder.arl_at(levels)


def _banded_levels(p: float, m: int, r: int, levels: int) -> float:
    """Zero-state ARL from (I - Q) L = 1 with LAPACK's banded solver (lower band r, upper band m)."""
    q = 1.0 - p
    u_band = min(m, levels - 1)
    l_band = min(r, levels - 1)
    ab = np.zeros((l_band + u_band + 1, levels))
    i = np.arange(levels)
    ab[u_band, :] = 1.0  # identity
    down = np.maximum(i - r, 0)
    ab[u_band + i - down, down] -= q  # (i, down) ; equals the diagonal for i == 0
    up = i + m
    keep = up < levels
    ab[u_band + i[keep] - up[keep], up[keep]] -= p
    sol = solve_banded((l_band, u_band), ab, np.ones(levels), check_finite=False)
    return float(sol[0])


def _arl_levels(p: float, m: int, r: int, levels: int) -> float:
    if levels <= m:
        return 1.0 / p  # every event jumps from 0 past the threshold
    if r == 1:
        return _R1Rows(p, m, levels - 1).arl_at(levels)
    return _banded_levels(p, m, r, levels)


def arl(p: float, p0: float, p1: float, h: float, resolution: int | None = None) -> float:
    """Exact zero-state average run length (messages) of the Bernoulli CUSUM tuned for p0 -> p1 with
    threshold h nats, when the true event rate is p (Brook & Evans 1972 chain; see module docstring).

    ``arl(p0, ...)`` is ARL0 (messages between false alarms), ``arl(p1, ...)`` is ARL1, the zero-state delay.
    """
    p = _check_p(p)
    h = _check_h(h)
    unit, m, r = lattice(p0, p1, resolution)
    return _arl_levels(p, m, r, _levels(h, unit))


@lru_cache(maxsize=4096)
def _calibrate_cached(p0: float, p1: float, arl0: float) -> float:
    unit, m, r = lattice(p0, p1)
    target = arl0
    lo = m  # levels <= m: every event alarms, ARL0 = 1/p0
    if 1.0 / p0 >= target:
        return lo * unit
    max_levels = _levels(_MAX_H_NATS, unit)
    # Wald/Ville: ARL0 >= e^h, so h = ln(target) (plus slack for lattice rounding) brackets the answer.
    hi = min(_levels(math.log(target) + 1.0, unit), max_levels)
    while True:
        if r == 1:
            rows = _R1Rows(p0, m, hi - 1)  # one pass serves every level <= hi
            reaches = lambda levels: rows.reaches(levels, target)  # noqa: E731
        else:
            reaches = lambda levels: _banded_levels(p0, m, r, levels) >= target  # noqa: E731
        if reaches(hi):
            break
        if hi >= max_levels:
            raise ValueError(f"arl0={arl0!r} needs a threshold beyond {_MAX_H_NATS} nats")
        lo, hi = hi, min(2 * hi, max_levels)
    # ARL0 is non-decreasing in the level: bisect for the smallest level reaching the target.  On a lattice
    # ARL0(h) is a step function, so this integer bisection is exactly where brentq would converge.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return hi * unit


def calibrate_h(p0: float, p1: float, arl0: float) -> float:
    """Threshold h (nats) whose exact zero-state ARL0 is the smallest lattice value >= arl0 messages.

    Cached on (p0, p1, arl0) rounded to 12 significant digits, so hundreds of scopes sharing a few baselines
    cost one computation each.  The result is a lattice point h = H*unit, so ``arl(p0, p0, p1, h) >= arl0``
    and one lattice step less falls below it.
    """
    llr_weights(p0, p1)
    arl0 = float(arl0)
    if not math.isfinite(arl0) or arl0 <= 1.0:
        raise ValueError(f"arl0 must be a finite number of messages > 1, got {arl0!r}")
    key = tuple(float(f"{v:.12g}") for v in (p0, p1, arl0))
    return _calibrate_cached(*key)


def delay_bound(p0: float, p1: float, arl0: float) -> float:
    """Exact zero-state ARL1 (messages) at the calibrated threshold: the minimum worst-case detection delay
    any procedure with this ARL0 can guarantee (Lorden 1971, Moustakides 1986; anchors.md C.4)."""
    return arl(p1, p0, p1, calibrate_h(p0, p1, arl0))


def cusum_step(s, x, n, a: float, b: float, out: np.ndarray | None = None):
    """Vectorised window update W <- max(0, W + x*a - (n-x)*b) for x events out of n messages.

    Exact aggregation of the per-message chart over a window, except that an alarm inside the window is only
    seen at its end (Reynolds & Stoumbos 1999).  Returns a float for scalar inputs, else an array (written into
    ``out`` when given, which lets the engine update millions of scopes without allocating).
    """
    inc = np.multiply(x, a + b, dtype=float)
    inc -= np.multiply(n, b, dtype=float)
    res = np.add(s, inc, out=out)
    res = np.maximum(res, 0.0, out=out)
    if np.ndim(res) == 0:
        return float(res)
    return res


class BernoulliCusum:
    """Page's CUSUM for a Bernoulli stream, calibrated to a target ARL0 in messages.

    River-style estimator: hyper-parameters in ``__init__``, state in ``reset()``, ``update(x, n)`` per message
    or per window.  p0 is frozen at construction: a baseline that kept learning would chase the very shift the
    chart must detect.  The statistic is not reset after an alarm; the caller decides (hysteresis).
    """

    def __init__(self, p0: float, p1: float, arl0: float | None = None, h: float | None = None):
        self.a, self.b = llr_weights(p0, p1)
        self.p0 = float(p0)
        self.p1 = float(p1)
        if (arl0 is None) == (h is None):
            raise ValueError("give exactly one of arl0 (target in-control run length, messages) or h (nats)")
        if h is None:
            self.arl0 = float(arl0)
            self.h = calibrate_h(self.p0, self.p1, self.arl0)
        else:
            self.h = _check_h(h)
            self.arl0 = None
        self.reset()

    def reset(self) -> None:
        self.statistic = 0.0

    def update(self, x, n=1) -> bool:
        """Add x events out of n messages; return True when the statistic is at or above h."""
        if n < 0 or x < 0 or x > n:
            raise ValueError(f"need 0 <= x <= n, got x={x!r}, n={n!r}")
        s = self.statistic + x * self.a - (n - x) * self.b
        self.statistic = s if s > 0.0 else 0.0
        return self.statistic >= self.h

    @property
    def alarm(self) -> bool:
        return self.statistic >= self.h

    def expected_delay(self) -> float:
        """Exact zero-state ARL1 (messages) of this chart when the rate is p1."""
        return arl(self.p1, self.p0, self.p1, self.h)

    def expected_run_length(self) -> float:
        """Exact zero-state ARL0 (messages) of this chart when the rate is p0."""
        return arl(self.p0, self.p0, self.p1, self.h)

    def to_dict(self) -> dict:
        return {"p0": self.p0, "p1": self.p1, "h": self.h, "arl0": self.arl0, "statistic": self.statistic}

    @classmethod
    def from_dict(cls, d: dict) -> "BernoulliCusum":
        obj = cls(d["p0"], d["p1"], h=d["h"])
        obj.arl0 = d.get("arl0")
        obj.statistic = float(d.get("statistic", 0.0))
        return obj

    def __repr__(self) -> str:
        return f"BernoulliCusum(p0={self.p0}, p1={self.p1}, h={self.h:.4f}, statistic={self.statistic:.4f})"
