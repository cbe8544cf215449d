"""The networks a few-shot problem builds for its learners (``problem.make_net``).

The benchmark fixes the architecture, so every learner meta-learns the same network: the
sinusoid problem's :class:`MLP` (1-40-40-1 in Finn et al. 2017), and for images a
:class:`ConvNet` or a :class:`FlatMLP`. Each takes a ``torch.Generator`` for its
initialisation, never torch's global one. Only torch is needed here, so the core
(:mod:`metarl_bench.supervised`, :mod:`metarl_bench.fewshot_images`) builds them without
importing learner code.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _linear_params(fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[nn.Parameter, nn.Parameter]:
    """PyTorch's default ``nn.Linear`` initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from ``generator``."""
    bound = 1.0 / math.sqrt(fan_in)
    w = nn.Parameter(torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=generator))
    b = nn.Parameter(torch.empty(fan_out).uniform_(-bound, bound, generator=generator))
    return w, b


class MLP(nn.Module):
    """ReLU multilayer perceptron (1-40-40-1 in the MAML paper) that also takes batched parameters.

    With parameters of shape ``(out, in)`` it is an ordinary MLP on ``(..., in)`` inputs.
    Through ``functional_call`` with parameters of shape ``(tasks, out, in)`` it maps
    inputs ``(tasks, points, in)`` task by task with one batched matrix product per layer.
    """

    supports_batched_params = True

    def __init__(self, in_features: int, hidden_sizes: tuple[int, ...], out_features: int, generator: torch.Generator):
        super().__init__()
        sizes = [in_features, *hidden_sizes, out_features]
        self.n_layers = len(sizes) - 1
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            w, bias = _linear_params(a, b, generator)
            self.register_parameter(f"w{i}", w)
            self.register_parameter(f"b{i}", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(self.n_layers):
            w, b = getattr(self, f"w{i}"), getattr(self, f"b{i}")
            if w.dim() == 3:  # batched parameters: (tasks, out, in)
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            else:
                h = torch.nn.functional.linear(h, w, b)
            if i < self.n_layers - 1:
                h = torch.relu(h)
        return h


class FlatMLP(MLP):
    """:class:`MLP` on images: flattens the trailing ``(C, H, W)`` dimensions first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(-3))


class ConvNet(nn.Module):
    """Small convolutional classifier for few-shot images: 3x3 conv, ReLU, 2x2 max-pool per block.

    ``channels`` gives each block's width (Finn et al. 2017 use four blocks of 64 on
    Omniglot); the features are averaged over space and fed to a linear head.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], n_classes: int, generator: torch.Generator):
        super().__init__()
        convs = []
        c_in = in_channels
        for c in channels:
            conv = nn.Conv2d(c_in, c, 3, padding=1, device="meta")
            bound = 1.0 / math.sqrt(c_in * 9)
            conv.weight = nn.Parameter(torch.empty(c, c_in, 3, 3).uniform_(-bound, bound, generator=generator))
            conv.bias = nn.Parameter(torch.empty(c).uniform_(-bound, bound, generator=generator))
            convs.append(conv)
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.head_w, self.head_b = _linear_params(c_in, n_classes, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        h = x.reshape(-1, *x.shape[-3:])
        for conv in self.convs:
            h = torch.nn.functional.max_pool2d(torch.relu(conv(h)), 2, ceil_mode=True)
        h = h.mean(dim=(2, 3))
        return torch.nn.functional.linear(h, self.head_w, self.head_b).reshape(*lead, -1)
