"""The training step's forward and backward replayed as a CUDA graph.

On a GPU the step's few hundred small kernels cost more to launch from Python than to run:
one step of 1 seed took 1.2 ms on an H200, about what 1000 seeds took. A CUDA graph records
the launches of `loss_and_grad` once per batch shape and replays them with one call; the
kernels are the very ones the step launches without it, so results are the same bit for bit
(tests/test_cuda.py). Inputs are copied into the graph's own buffers before each replay; the
losses are returned as a copy (the caller keeps them for the epoch), the gradient as the
graph's buffer, valid until the next step (the optimizer and the probes read it at once).

A shape whose capture fails (a plugin doing something a graph cannot hold, such as copying to
the CPU) runs without a graph, with one warning. TESTBED_CUDA_GRAPHS=0 turns graphs off.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

WARMUP = 3  # eager runs on a side stream before a capture (cuBLAS and the allocator settle)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    index: torch.Tensor
    labels: torch.Tensor
    losses: torch.Tensor
    grad: torch.Tensor


def wanted(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get("TESTBED_CUDA_GRAPHS", "1") != "0"


class StepGraphs:
    """`fn(arch, views, index, labels, scored)` for fixed `arch` and `views`, replayed from a
    graph per (index shape, labels shape, scored)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.captured: dict[tuple, _Captured | None] = {}

    def __call__(self, arch, views: dict, index: torch.Tensor, labels: torch.Tensor, scored: int | None):
        key = (tuple(index.shape), tuple(labels.shape), scored, id(arch))
        if key not in self.captured:
            self.captured[key] = self._capture(arch, views, index, labels, scored)
        got = self.captured[key]
        if got is None:
            return self.fn(arch, views, index, labels, scored)
        got.index.copy_(index)
        got.labels.copy_(labels)
        got.graph.replay()
        return got.losses.clone(), got.grad

    def _capture(self, arch, views: dict, index: torch.Tensor, labels: torch.Tensor, scored: int | None) -> _Captured | None:
        static_index, static_labels = index.clone(), labels.clone()
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP):
                    self.fn(arch, views, static_index, static_labels, scored)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                losses, grad = self.fn(arch, views, static_index, static_labels, scored)
        except Exception as exc:  # the step still runs, launched op by op
            warnings.warn(f"training step not captured as a CUDA graph ({type(exc).__name__}: {exc}); running it without", stacklevel=2)
            return None
        return _Captured(graph, static_index, static_labels, losses, grad)
