"""exp, log and GELU for the fused kernels, written out of + - * / and exact operations.

Why not libm: glibc picks among FMA and non-FMA variants of exp, log and erf by the CPU it runs
on, and numba's vectorised math may go to Intel's SVML, so a call would make the bits depend on
the machine. Everything here is IEEE arithmetic (correctly rounded, no contraction: the kernels
compile with fastmath off) plus floor, comparisons and exponent-field bit casts, so it gives the
same bits on any x86-64 CPU, scalar or at any vector width.

Method: Cody & Waite's range reduction for exp (x = k ln 2 + r, done in float64 so that r is
exact to float32's needs, then 2^k set in the exponent field), polynomials near-minimax in
the relative error (`testbed.engine.fused.fit` derives them), evaluated by Horner's rule in the
kernel's own precision; log by the exponent field and the atanh series of the mantissa.
Accuracy in float32: within a few ulp of the correctly rounded value (tests/test_fused_engine.py
measures it against math in float64 over wide ranges). In float64 (the gradient tests' variant)
the same polynomials give about 1e-9 relative error: float32-grade, by design.

Every function is generic over the float type of its argument (`like` casts constants to it),
so one source gives the float32 kernel and the float64 one.
"""

from __future__ import annotations

import os
from typing import Any

_SVML = "NUMBA_DISABLE_INTEL_SVML"
_user_svml = os.environ.get(_SVML)
os.environ.setdefault(_SVML, "1")  # before numba loads: no SVML vector math

import numpy as np  # noqa: E402
from numba import config as numba_config  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402

if _user_svml is None:  # importing testbed changes no global state: numba has read it, put the environment back
    del os.environ[_SVML]
    setattr(numba_config, "USING_SVML", False)  # noqa: B010  (a config attribute numba sets at run time)

# Near-minimax coefficients, lowest order first (`python -m testbed.engine.fused.fit`).
EXP = (
    1.0000000005920207, 1.0000000361258996, 0.4999999149303679, 0.16666420832119086, 0.04166835803302013,
    0.008374771520122441, 0.0013829420596118327,
)  # e^r, |r| <= ln 2 / 2: relative error 1.9e-09
ERF_SMALL = (
    1.1283791655539248, -0.37612608404051745, 0.1128281946881741, -0.026756971904277095, 0.0047175674144035225,
)  # erf(z) / z in u = z^2, z < 1/2: 1.4e-09
ERFC_LARGE = (
    3.2125355970562997e-06, 0.2819953626333305, 0.28344062006163345, 0.23635753012381208, 0.22808752975777424,
    -0.08504125064885507, 0.35783954774601867, -0.5433859014782145, 0.29145947486021273, -0.044000150519954956,
    -0.006770149106389909,
)  # erfc(z) exp(z^2) in t = 1 / (1 + z/2), 1/2 <= z <= 10: 9.6e-10

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
INV_SQRT2 = 0.7071067811865476
INV_SQRT_2PI = 0.3989422804014327
# inline="always" on what runs inside the kernels' loops: LLVM left a call to gelu in place,
# and a call keeps a loop from vectorising.
JIT = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}


def like(value: float, x: Any) -> Any:
    """`value` in the float type of `x` (a scalar or an array): constants must not widen a
    float32 computation to float64 (numba's promotion of a Python float)."""


@overload(like, jit_options={"fastmath": False})
def _like(value, x):
    kind = x.dtype if isinstance(x, types.Array) else x
    if kind == types.float32:
        return lambda value, x: np.float32(value)
    return lambda value, x: np.float64(value)


@intrinsic
def _bits_to_float64(typingctx, bits):
    """The float64 whose bit pattern is the int64 `bits`."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@intrinsic
def _float64_to_bits(typingctx, value):
    """The int64 bit pattern of the float64 `value`."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@njit(inline="always", **JIT)
def _exp_poly(t):
    """EXP by Horner's rule, written out: a loop over a tuple would index it at run time and
    keep the kernels' loops from vectorising."""
    c = EXP
    return like(c[0], t) + t * (like(c[1], t) + t * (like(c[2], t) + t * (like(c[3], t) + t * (
        like(c[4], t) + t * (like(c[5], t) + t * like(c[6], t))))))


@njit(inline="always", **JIT)
def _erf_poly(t):
    c = ERF_SMALL
    return like(c[0], t) + t * (like(c[1], t) + t * (like(c[2], t) + t * (like(c[3], t) + t * like(c[4], t))))


@njit(inline="always", **JIT)
def _erfc_poly(t):
    c = ERFC_LARGE
    return like(c[0], t) + t * (like(c[1], t) + t * (like(c[2], t) + t * (like(c[3], t) + t * (like(c[4], t) + t * (
        like(c[5], t) + t * (like(c[6], t) + t * (like(c[7], t) + t * (like(c[8], t) + t * (like(c[9], t) + t * like(c[10], t))))))))))


@njit(inline="always", **JIT)
def exp_of(xd, x):
    """e^xd for a float64 `xd`, in the precision of `x` (an exemplar of the kernel's float
    type): x = k ln 2 + r in float64, e^r by a polynomial in x's precision, 2^k exactly."""
    c = xd
    if c < -708.0:
        c = -708.0
    if c > 709.0:
        c = 709.0
    if c != c:  # NaN: any k; the NaN goes on through r
        c = 0.0
    k = np.floor(c * LOG2E + 0.5)
    r = xd - k * LN2
    scale = _bits_to_float64(np.int64(k + 1023.0) << 52)  # type: ignore[call-arg]  # numba's @intrinsic drops typingctx from the signature
    value = np.float64(_exp_poly(like(r, x))) * scale
    if xd < -708.0:
        value = 0.0
    if xd > 709.0:
        value = np.inf
    return like(value, x)


@njit(inline="always", **JIT)
def exp(x):
    """e^x in x's precision."""
    return exp_of(np.float64(x), x)


@njit(**JIT)
def log(x):
    """ln x in float64 for a positive float64 x (the kernels need it for the loss only): the
    exponent field gives x = 2^e m, m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(f) with
    f = (m - 1)/(m + 1), |f| < 0.172, summed to f^19 (relative error below 1e-15)."""
    bits = _float64_to_bits(x)  # type: ignore[call-arg]  # numba's @intrinsic drops typingctx from the signature
    e = ((bits >> 52) & 0x7FF) - 1023
    m = _bits_to_float64((bits & 0xFFFFFFFFFFFFF) | (np.int64(1023) << 52))  # type: ignore[call-arg]  # numba's @intrinsic drops typingctx from the signature
    if m > 1.4142135623730951:
        m = m * 0.5
        e += 1
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    series = 0.0
    for i in range(9, -1, -1):
        series = series * f2 + 1.0 / (2 * i + 1)
    value = e * LN2 + 2.0 * f * series
    if x != x or x == np.inf:
        value = x
    if x == 0.0:
        value = -np.inf
    if x < 0.0:
        value = np.nan
    return value


@njit(inline="always", **JIT)
def gelu(x):
    """x Phi(x) (exact GELU, Phi the Gaussian CDF) and its derivative Phi(x) + x phi(x), in x's
    precision. Phi(x) = (1 + erf(x / sqrt 2)) / 2: for |z| = |x|/sqrt 2 < 1/2 by erf's series
    polynomial; beyond, by erfc(z) = exp(-z^2) Q(1/(1 + z/2)), so that neither side loses
    digits to cancellation (Phi >= 0.24 where 1/2 - erf/2 is taken). exp(-z^2) = exp(-x^2/2)
    is computed once for both Phi and phi; x^2/2 is exact in float64 for a float32 x."""
    xd = np.float64(x)
    e = exp_of(-(xd * xd) * 0.5, x)
    z = abs(x) * like(INV_SQRT2, x)
    half = like(0.5, x)
    erf_small = z * _erf_poly(z * z)
    t = like(1.0, x) / (like(1.0, x) + z * half)
    erfc_large = e * _erfc_poly(t)
    if z > like(10.0, x):
        erfc_large = like(0.0, x)
    if z < half:
        phi = half + half * erf_small if x >= like(0.0, x) else half - half * erf_small
    else:
        phi = like(1.0, x) - half * erfc_large if x >= like(0.0, x) else half * erfc_large
    return x * phi, phi + x * (e * like(INV_SQRT_2PI, x))
