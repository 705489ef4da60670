"""Built-in norms, applied over the last (embedding) axis.

Each overrides `Norm.vjp(x, y, grad)` with a closed form, which the training step uses instead
of autograd (tests check both agree); a third-party norm may omit it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from testbed.plugin_api import Norm, Params, arithmetic, hookimpl, plugin


class EpsParams(Params):
    eps: float = Field(1e-5, ge=0, description="added after the square root")


class RadialNorm(Norm):
    """x / (c |x| + eps): rms with c = 1/sqrt(d), l2 with c = 1."""

    def __init__(self, eps: float, rms: bool):
        self.eps, self.rms = eps, rms

    def _radius(self, x: torch.Tensor) -> torch.Tensor:
        r = arithmetic.of(x).norm(x, dim=-1, keepdim=True)  # seed-invariant on a GPU too
        return r * (1.0 / math.sqrt(x.shape[-1])) if self.rms else r

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x / (self._radius(x) + self.eps)

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        r = self._radius(x)
        return self._back(y, r, r + self.eps, grad)

    def forward_and_vjp(self, x: torch.Tensor):
        # the radius and its denominator once for both directions (the same values as vjp's)
        r = self._radius(x)
        den = r + self.eps
        y = x / den
        return y, lambda g: self._back(y, r, den, g)

    def _back(self, y: torch.Tensor, r: torch.Tensor, den: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        # y = x k with k = 1/(r + eps): dx = k g - y (g . y) / (r * n), n = d for rms, 1 for l2
        n = y.shape[-1] if self.rms else 1
        dot = arithmetic.of(y).sum(grad * y, -1, keepdim=True)
        return grad / den - y * (dot / (r * n))


@plugin("rms", EpsParams)
def rms(params: EpsParams):
    """x / (sqrt(mean(x^2)) + eps): the papers' RMS norm (scale invariant)."""
    return RadialNorm(params.eps, rms=True)


@plugin("l2", EpsParams)
def l2(params: EpsParams):
    """x / (|x| + eps): projection onto the unit sphere."""
    return RadialNorm(params.eps, rms=False)


# sigma(r) / r as a polynomial in u^2 = (r / radius)^2, each sigma rising from 0 to 1 at u = 1,
# with the derivative of that polynomial in u^2:
#   linear  sigma = u                        (continuous)
#   cubic   sigma = (3u - u^3) / 2           (sigma' = 0 at the radius: C1)
#   quintic sigma = (15u - 10u^3 + 3u^5) / 8 (sigma' = sigma'' = 0 at the radius: C2)
_SHAPES = {
    "linear": (lambda u2: torch.ones_like(u2), lambda u2: torch.zeros_like(u2)),
    "cubic": (lambda u2: (3.0 - u2) / 2.0, lambda u2: torch.full_like(u2, -0.5)),
    "quintic": (lambda u2: (15.0 + u2 * (-10.0 + 3.0 * u2)) / 8.0, lambda u2: (-10.0 + 6.0 * u2) / 8.0),
}


class SmoothParams(Params):
    radius: float = Field(1.0, gt=0, description="RMS radius from which sigma = 1 (the norm equals rms)")
    shape: Literal["linear", "cubic", "quintic"] = Field("quintic", description="profile of sigma below the radius")
    eps: float = Field(1e-5, ge=0, description="as in rms, so both agree beyond the radius")


class SmoothNorm(Norm):
    """x w(s) with s = mean(x^2): w = sigma(r)/r below the radius, 1/(r + eps) beyond it."""

    def __init__(self, radius: float, shape: str, eps: float):
        self.R, self.R2, self.eps = radius, radius * radius, eps
        self.poly, self.dpoly = _SHAPES[shape]

    def _weight(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """w(s) and dw/ds, both without sqrt(0) anywhere (so gradients stay finite at 0)."""
        inside = s < self.R2
        r_out = torch.clamp(s, min=self.R2).sqrt()
        u2 = s / self.R2
        scale = 1.0 / (self.R + self.eps)
        w = torch.where(inside, self.poly(u2) * scale, 1.0 / (r_out + self.eps))
        dw = torch.where(inside, self.dpoly(u2) * (scale / self.R2), -0.5 / (r_out * (r_out + self.eps) ** 2))
        return w, dw

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s = arithmetic.of(x).mean(x.pow(2), -1, keepdim=True)
        inner = self.poly(s / self.R2) / (self.R + self.eps)  # sigma(r)/r, matched to rms at r = R
        outer = 1.0 / (torch.clamp(s, min=self.R2).sqrt() + self.eps)  # clamped: no sqrt(0) in the graph
        return x * torch.where(s < self.R2, inner, outer)

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        # dx = w g + x w'(s) (2/d) (g . x)
        ops = arithmetic.of(x)
        s = ops.mean(x.pow(2), -1, keepdim=True)
        w, dw = self._weight(s)
        dot = ops.sum(grad * x, -1, keepdim=True)
        return grad * w + x * (dw * dot * (2.0 / x.shape[-1]))


@plugin("smooth", SmoothParams)
def smooth(params: SmoothParams):
    """sigma(r) x / r with r = rms(x): equals rms beyond the radius, shrinks smoothly to 0 at the origin."""
    return SmoothNorm(params.radius, params.shape, params.eps)


class Identity(Norm):
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return grad


@plugin("identity")
def identity(params: Params):
    """No normalisation."""
    return Identity()


@hookimpl
def testbed_norms():
    return [rms, l2, smooth, identity]
