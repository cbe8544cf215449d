"""Jacobian and Hessian-vector products of a group-stacked MLP policy, written out by hand
(Pearlmutter's R-operator), for MAML-TRPO's conjugate gradient.

Why by hand: MAML-TRPO multiplies by the inner loss's Hessian twice and by the Fisher
once on every conjugate-gradient iteration. Autograd's double backward rebuilds and walks
a graph of about 39 batched matrix products per iteration and repeats the elementwise
work that does not depend on the direction; ``torch.func``'s forward-over-reverse product
measured 2x slower still. Here everything that does not depend on the direction ``v``
(the activations, their first and second derivatives, the back-propagated errors and
their products) is computed once per meta-batch, and the large intermediates live in
buffers reused across products (fresh 10 MB tensors cost page faults on every
allocation). Per hidden layer, a Jacobian product costs 2 matrix products, a
vector-Jacobian product 2 and an inner-loss Hessian product 6. No library offers this
for a stack of per-task networks.

Only the distribution head (a few numbers per sample: a Gaussian's mean and log-std, or
a categorical's logits) goes through autograd, so any :class:`MLPPolicy` subclass that
implements ``head`` is covered.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from metarl_bench.baselines.gradient.common import Dist, GroupBatch, MLPPolicy, Params, tanh_value


def _outer(delta: Tensor, h: Tensor) -> Tensor:
    """``sum_k delta_k h_k^T`` per group, ``(G, out, in)``. The product is taken in the
    orientation whose result has the fewer rows: a (64 x K) @ (K x 2) batched product runs
    about 7x slower than (2 x K) @ (K x 64) on the CPUs measured."""
    if delta.shape[-1] > h.shape[-1]:
        return torch.bmm(h.transpose(-1, -2), delta).transpose(-1, -2)
    return torch.bmm(delta.transpose(-1, -2), h)


class MLPTape:
    """The trunk of ``policy`` evaluated at group-stacked ``params`` ``(G, ...)`` on
    ``obs`` ``(G, K, obs_dim)``, kept for products with its Jacobian (:meth:`jvp`,
    :meth:`vjp`). :attr:`z` is the trunk's output, :attr:`extra` the head's parameters."""

    # set by InnerLossCurvature, read by the backward R-pass of :meth:`vjp`
    deltas: list[Tensor]  # the loss's errors at each layer's output
    gh_dd: list[Tensor | None]  # dL/dh_{i-1} * act''(a_{i-1})

    def __init__(self, policy: MLPPolicy, params: Params, obs: Tensor, second_order: bool = True) -> None:
        self.policy = policy
        self.params = params
        n = self.num_layers = policy.num_layers
        self.extra_names = policy.head_names
        self.extra = {k: params[k].detach() for k in self.extra_names}
        self.weights = [params[f"w{i}"].detach() for i in range(n)]
        self._buffers: dict[str, Tensor] = {}
        tanh = policy.nonlinearity == "tanh"
        with torch.no_grad():
            h = obs
            self.inputs: list[Tensor] = []  # each layer's input
            self.dact: list[Tensor] = []  # act'(a_i), hidden layers
            self.ddact: list[Tensor | None] = []  # act''(a_i); None for relu, where it is 0
            for i in range(n):
                self.inputs.append(h)
                a = torch.baddbmm(params[f"b{i}"].detach().unsqueeze(-2), h, self.weights[i].transpose(-1, -2))
                if i == n - 1:
                    break
                if tanh:
                    h = tanh_value(a)  # tanh, see common._Tanh
                    d = 1.0 - h * h
                    self.ddact.append(-2.0 * h * d if second_order else None)
                else:
                    h = torch.relu(a)
                    d = (a > 0).to(a.dtype)
                    self.ddact.append(None)
                self.dact.append(d)
        self.z = a

    def _head(self) -> Dist:
        """The head's distribution with :attr:`z` and :attr:`extra` made autograd leaves:
        a small graph (a few numbers per sample) for the head's derivatives."""
        self.z.requires_grad_(True)
        for t in self.extra.values():
            t.requires_grad_(True)
        return self.policy.head(self.z, self.extra)

    def _head_leaves(self) -> list[Tensor]:
        return [self.z, *self.extra.values()]

    def _buffer(self, name: str, like: Tensor) -> Tensor:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != like.shape:
            buf = self._buffers[name] = torch.empty_like(like)
        return buf

    def jvp(self, v: Params) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """The derivatives along the trunk part of ``v``: of the output, ``R(z)``, and of
        the hidden layers' pre-activations ``R(a_i)`` and activations ``R(h_i)``
        (buffers, valid until the next call)."""
        n = self.num_layers
        pre: list[Tensor] = []
        act: list[Tensor] = []
        with torch.no_grad():
            for i in range(n):
                ra = self._buffer(f"ra{i}", self.z if i == n - 1 else self.dact[i])
                torch.baddbmm(v[f"b{i}"].unsqueeze(-2), self.inputs[i], v[f"w{i}"].transpose(-1, -2), out=ra)
                if i > 0:
                    ra.baddbmm_(act[i - 1], self.weights[i].transpose(-1, -2))
                if i < n - 1:
                    pre.append(ra)
                    act.append(torch.mul(self.dact[i], ra, out=self._buffer(f"rh{i}", ra)))
        return ra, pre, act

    def vjp(self, cot_z: Tensor, r_op: tuple[Params, list[Tensor], list[Tensor]] | None = None) -> Params:
        """Back-propagate ``cot_z``, a cotangent of :attr:`z`, to the trunk's parameters.

        With ``r_op = (v, pre, act)`` this is instead the backward R-pass of the loss's
        Hessian product along ``v`` (``pre`` and ``act`` from :meth:`jvp`, ``cot_z`` the
        head's second-order term): the terms in the loss's errors :attr:`deltas` and in
        ``act''`` (:attr:`gh_dd`) join the plain back-propagation.
        """
        n = self.num_layers
        out: Params = {}
        with torch.no_grad():
            delta = cot_z
            for i in reversed(range(n)):
                gw = _outer(delta, self.inputs[i])
                if r_op is not None and i > 0:
                    gw = gw + _outer(self.deltas[i], r_op[2][i - 1])
                out[f"w{i}"] = gw
                out[f"b{i}"] = delta.sum(-2)
                if i == 0:
                    break
                gh = torch.bmm(delta, self.weights[i], out=self._buffer(f"gh{i}", self.dact[i - 1]))
                if r_op is not None:
                    gh.baddbmm_(self.deltas[i], r_op[0][f"w{i}"])
                delta = torch.mul(gh, self.dact[i - 1], out=self._buffer(f"delta{i}", gh))
                if r_op is not None:
                    gh_dd = self.gh_dd[i]
                    if gh_dd is not None:
                        delta.addcmul_(gh_dd, r_op[1][i - 1])
        return out


class InnerLossCurvature(MLPTape):
    """The summed per-task loss ``-sum_k w_k A_k log pi(a_k | s_k)`` of ``batch`` at
    group-stacked ``params`` ``(G, ...)``: its gradient :attr:`grad` and ``v -> H v``
    (:meth:`hvp`) with ``H`` the per-task Hessian (block diagonal over tasks). With
    ``second_order`` False only the gradient is computed (no graph, nothing kept for
    :meth:`hvp`).
    """

    def __init__(self, policy: MLPPolicy, params: Params, batch: GroupBatch, second_order: bool = True) -> None:
        super().__init__(policy, params, batch.obs, second_order)
        self.second_order = second_order
        n = self.num_layers
        # the head's loss and its first derivatives, with a graph for the second ones
        dist = self._head()
        loss = -(policy.log_prob(dist, batch.actions) * batch.advantages * batch.weights).sum()
        self._first = torch.autograd.grad(loss, self._head_leaves(), create_graph=second_order, materialize_grads=True)
        with torch.no_grad():
            # backward pass, keeping the errors at each layer's output
            delta = self._first[0].detach()
            self.deltas = [delta] * n
            self.gh_dd = [None] * n
            grad: Params = {}
            for i in reversed(range(n)):
                self.deltas[i] = delta
                grad[f"w{i}"] = _outer(delta, self.inputs[i])
                grad[f"b{i}"] = delta.sum(-2)
                if i > 0:
                    gh = torch.bmm(delta, self.weights[i])
                    dd = self.ddact[i - 1]
                    self.gh_dd[i] = None if dd is None else gh * dd
                    delta = gh * self.dact[i - 1]
            for k, g in zip(self.extra_names, self._first[1:]):
                grad[k] = g.detach()
        self.grad = grad

    def hvp(self, v: Params) -> Params:
        """``H v`` per task, for per-task directions ``v`` ``(G, ...)`` named like the params."""
        if not self.second_order:
            raise RuntimeError("InnerLossCurvature.hvp needs second_order=True")
        rz, pre, act = self.jvp(v)
        # the head's Hessian times (R(z), v_extra): differentiate <first derivatives, direction>
        directions = [rz, *(v[k] for k in self.extra_names)]
        dot = (self._first[0] * rz).sum()
        for g, d in zip(self._first[1:], directions[1:]):
            dot = dot + (g * d).sum()
        second = torch.autograd.grad(dot, self._head_leaves(), retain_graph=True, materialize_grads=True)
        hv = self.vjp(second[0], (v, pre, act))
        hv.update(zip(self.extra_names, second[1:]))
        return hv


class FisherProduct(MLPTape):
    """``u -> sum_k w_k D_k^T M_k D_k u`` per task: the Fisher information of the policy at
    group-stacked ``params`` on ``obs`` weighted by ``weights`` ``(G, K)``, with ``D_k``
    the Jacobian of the distribution at sample k and ``M_k`` the KL's Hessian in
    distribution coordinates (the policy's ``fisher_cotangent``)."""

    def __init__(self, policy: MLPPolicy, params: Params, obs: Tensor, weights: Tensor) -> None:
        super().__init__(policy, params, obs)
        self.dist = self._head()
        self._at = policy.detach(self.dist)
        self._scale = weights.unsqueeze(-1)

    def __call__(self, u: Params) -> Params:
        rz, _, _ = self.jvp(u)
        with fwAD.dual_level():  # the head's Jacobian: a few numbers per sample
            z = fwAD.make_dual(self.z.detach(), rz)
            extra = {k: fwAD.make_dual(self.extra[k].detach(), u[k]) for k in self.extra_names}
            tangent = tuple(fwAD.unpack_dual(d).tangent for d in self.policy.head(z, extra))
        cotangent = tuple(c * self._scale for c in self.policy.fisher_cotangent(self._at, tangent))
        pulled = torch.autograd.grad(self.dist, self._head_leaves(), grad_outputs=cotangent,
                                     retain_graph=True, materialize_grads=True)
        out = self.vjp(pulled[0])
        out.update(zip(self.extra_names, pulled[1:]))
        return out
