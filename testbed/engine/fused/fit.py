"""How the coefficients in `testbed.engine.fused.mathlib` were made (run this module to print them).

Each function is approximated by a polynomial fitted by weighted least squares at Chebyshev
nodes, with weights 1/f so that the *relative* error is what is minimised: near-minimax in the
relative error (Chebyshev-node least squares is within a small factor of the minimax
polynomial; see Trefethen, "Approximation Theory and Approximation Practice", ch. 16). The
targets come from Python's `math` module in float64. Degrees are chosen so that the
approximation error (about 1e-9 relative) sits well below float32's rounding (6e-8), leaving
the rounding of the float32 evaluation as the error that shows.
"""

from __future__ import annotations

import math

import numpy as np

NODES = 4000


def fit(f, lo: float, hi: float, degree: int) -> tuple[list[float], float]:
    """Coefficients (lowest order first) of a polynomial p on [lo, hi] with p/f - 1 small, and
    the largest |p/f - 1| on a fine grid."""
    k = np.arange(NODES)
    x = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (k + 0.5) / NODES)
    y = np.array([f(v) for v in x])
    coeffs, *_ = np.linalg.lstsq(np.vander(x, degree + 1, increasing=True) / y[:, None], np.ones(NODES), rcond=None)
    grid = np.linspace(lo, hi, 100_001)
    error = float(np.max(np.abs(np.polynomial.polynomial.polyval(grid, coeffs) / np.array([f(v) for v in grid]) - 1)))
    return [float(c) for c in coeffs], error


def _erf_over_z(u: float) -> float:
    """erf(z) / z as a function of u = z^2."""
    z = math.sqrt(u)
    return math.erf(z) / z if z > 0 else 2 / math.sqrt(math.pi)


def _scaled_erfc(t: float) -> float:
    """erfc(z) exp(z^2) as a function of t = 1 / (1 + z/2)."""
    z = 2 * (1 / t - 1)
    return math.erfc(z) * math.exp(z * z)


TARGETS = {
    # e^r on the Cody-Waite reduced range |r| <= ln(2)/2
    "EXP": (math.exp, -math.log(2) / 2, math.log(2) / 2, 6),
    # erf(z) = z P(z^2) for z < 1/2
    "ERF_SMALL": (_erf_over_z, 0.0, 0.25, 4),
    # erfc(z) = exp(-z^2) Q(1 / (1 + z/2)) for 1/2 <= z <= 10 (beyond, erfc(z) < 3e-45)
    "ERFC_LARGE": (_scaled_erfc, 1 / (1 + 10 / 2), 1 / (1 + 0.5 / 2), 10),
}


if __name__ == "__main__":
    for name, (f, lo, hi, degree) in TARGETS.items():
        coeffs, error = fit(f, lo, hi, degree)
        print(f"{name} = ({', '.join(repr(c) for c in coeffs)})  # relative error {error:.1e}")
