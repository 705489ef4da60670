"""Built-in norms, applied over the last (embedding) axis."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from testbed.hookspecs import hookimpl
from testbed.plugin import Params, plugin


class EpsParams(Params):
    eps: float = Field(1e-5, ge=0, description="added after the square root")


@plugin("rms", EpsParams)
def rms(params: EpsParams):
    """x / (sqrt(mean(x^2)) + eps): the papers' RMS norm (scale invariant)."""
    eps = params.eps

    def apply(x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps)

    return apply


@plugin("l2", EpsParams)
def l2(params: EpsParams):
    """x / (|x| + eps): projection onto the unit sphere."""
    eps = params.eps

    def apply(x: torch.Tensor) -> torch.Tensor:
        return x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + eps)

    return apply


# sigma(r) / r as a polynomial in u^2 = (r / radius)^2, each sigma rising from 0 to 1 at u = 1:
#   linear  sigma = u                        (continuous)
#   cubic   sigma = (3u - u^3) / 2           (sigma' = 0 at the radius: C1)
#   quintic sigma = (15u - 10u^3 + 3u^5) / 8 (sigma' = sigma'' = 0 at the radius: C2)
_SHAPES = {
    "linear": lambda u2: torch.ones_like(u2),
    "cubic": lambda u2: (3.0 - u2) / 2.0,
    "quintic": lambda u2: (15.0 + u2 * (-10.0 + 3.0 * u2)) / 8.0,
}


class SmoothParams(Params):
    radius: float = Field(1.0, gt=0, description="RMS radius from which sigma = 1 (the norm equals rms)")
    shape: Literal["linear", "cubic", "quintic"] = Field("quintic", description="profile of sigma below the radius")
    eps: float = Field(1e-5, ge=0, description="as in rms, so both agree beyond the radius")


@plugin("smooth", SmoothParams)
def smooth(params: SmoothParams):
    """sigma(r) x / r with r = rms(x): equals rms beyond the radius, shrinks smoothly to 0 at the origin."""
    R, eps, poly = params.radius, params.eps, _SHAPES[params.shape]
    R2 = R * R

    def apply(x: torch.Tensor) -> torch.Tensor:
        s = x.pow(2).mean(-1, keepdim=True)  # r^2
        outer = 1.0 / (torch.clamp(s, min=R2).sqrt() + eps)  # rms scale; clamped so no sqrt(0) in the graph
        inner = poly(s / R2) / (R + eps)  # sigma(r) / r, matched to `outer` at r = R
        return x * torch.where(s < R2, inner, outer)

    return apply


@plugin("identity")
def identity(params: Params):
    """No normalisation."""
    return lambda x: x


@hookimpl
def testbed_norms():
    return [rms, l2, smooth, identity]
