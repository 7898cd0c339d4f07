"""Center-pivot 4D convolution against a plain full 4D convolution written here."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from sosc.errors import ConfigError, ShapeError
from sosc.matchers import cp4d
from sosc.matchers.cp4d import (
    CenterPivotConv4d,
    Conv4d,
    center_pivot_conv4d,
    conv4d,
    group_norm_4d,
    is_channels_last_4d,
    pointwise_conv4d,
    subsample_target,
    to_channels_last_4d,
)


def reference_conv4d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int, padding: int
) -> torch.Tensor:
    """Full 4D convolution as an explicit sum over all k^4 kernel taps (stride on target dims)."""
    b, _, hs, ws, ht, wt = x.shape
    k = weight.shape[-1]
    xp = F.pad(x, (padding,) * 8)
    oh, ow = hs + 2 * padding - k + 1, ws + 2 * padding - k + 1
    th, tw = (ht + 2 * padding - k) // stride + 1, (wt + 2 * padding - k) // stride + 1

    def taps(start: int, count: int, step: int = 1) -> slice:
        return slice(start, start + step * (count - 1) + 1, step)

    windows = torch.stack(
        [
            xp[:, :, taps(i, oh), taps(j, ow), taps(m, th, stride), taps(n, tw, stride)]
            for i, j, m, n in itertools.product(range(k), repeat=4)
        ],
        dim=2,
    )  # (B, C, k^4, oh, ow, th, tw): every tap's shifted input
    out = torch.einsum("bctpqrs,oct->bopqrs", windows, weight.flatten(2))
    return out + bias.view(1, -1, 1, 1, 1, 1)


def center_pivot_kernel(weight_src: torch.Tensor, weight_trg: torch.Tensor) -> torch.Tensor:
    """The full ``(O, C, k, k, k, k)`` kernel that is zero off the two center-pivot planes."""
    o, c, k, _ = weight_src.shape
    full = torch.zeros(o, c, k, k, k, k, dtype=weight_src.dtype)
    full[:, :, :, :, k // 2, k // 2] += weight_src
    full[:, :, k // 2, k // 2, :, :] += weight_trg
    return full


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


class TestCenterPivotConv4d:
    @pytest.mark.parametrize("kernel_size", [3, 5])
    @pytest.mark.parametrize("stride", [1, 2])
    def test_equals_masked_full_conv(self, kernel_size, stride):
        x = torch.randn(2, 3, 5, 6, 7, 4)  # non-square source and target dims
        ws, wt = (
            torch.randn(4, 3, kernel_size, kernel_size),
            torch.randn(4, 3, kernel_size, kernel_size),
        )
        bias = torch.randn(4)
        ref = reference_conv4d(x, center_pivot_kernel(ws, wt), bias, stride, kernel_size // 2)
        out = center_pivot_conv4d(x, ws, wt, bias, stride=stride)
        assert out.shape == ref.shape
        assert rel_err(out, ref) < 1e-5

    @pytest.mark.parametrize("kernel_size,stride,padding", [(3, 2, 0), (5, 3, 1), (5, 1, 0)])
    def test_other_paddings(self, kernel_size, stride, padding):
        x = torch.randn(1, 2, 6, 5, 8, 7)
        ws, wt = (
            torch.randn(3, 2, kernel_size, kernel_size),
            torch.randn(3, 2, kernel_size, kernel_size),
        )
        bias = torch.randn(3)
        ref = reference_conv4d(x, center_pivot_kernel(ws, wt), bias, stride, padding)
        out = center_pivot_conv4d(x, ws, wt, bias, stride=stride, padding=padding)
        assert out.shape == ref.shape
        assert rel_err(out, ref) < 1e-5

    def test_module_matches_function_and_sizes_change_between_calls(self):
        conv = CenterPivotConv4d(3, 5, 3, stride=2)
        for shape in [(2, 3, 4, 6, 8, 5), (1, 3, 3, 3, 4, 4)]:  # no state kept from the first call
            x = torch.randn(shape)
            ref = reference_conv4d(
                x,
                center_pivot_kernel(conv.weight_src, conv.weight_trg).detach(),
                conv.bias.detach(),
                2,
                1,
            )
            assert rel_err(conv(x).detach(), ref) < 1e-5

    def test_any_input_layout_and_channels_last_output(self):
        x = torch.randn(2, 3, 4, 5, 6, 7)
        ws, wt = torch.randn(4, 3, 3, 3), torch.randn(4, 3, 3, 3)
        ref = center_pivot_conv4d(x, ws, wt)
        cl = to_channels_last_4d(x)
        assert is_channels_last_4d(cl) and torch.equal(cl, x)
        strided = torch.randn(2, 3, 4, 5, 6, 14)[..., ::2]
        for inp in (cl, x.transpose(2, 3).contiguous().transpose(2, 3), strided):
            out = center_pivot_conv4d(inp, ws, wt)
            assert is_channels_last_4d(out)
        assert torch.allclose(center_pivot_conv4d(cl, ws, wt), ref, atol=1e-5)

    def test_gradcheck(self):
        x = torch.randn(1, 2, 3, 3, 4, 3, dtype=torch.float64, requires_grad=True)
        ws = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        wt = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        b = torch.randn(2, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda *a: center_pivot_conv4d(*a, stride=2), (x, ws, wt, b)
        )

    def test_errors(self):
        with pytest.raises(ConfigError, match="odd"):
            CenterPivotConv4d(2, 2, 4)
        with pytest.raises(ConfigError, match="padding"):
            CenterPivotConv4d(2, 2, 3, padding=2)
        with pytest.raises(ShapeError, match="channels"):
            CenterPivotConv4d(2, 2, 3)(torch.randn(1, 3, 4, 4, 4, 4))
        with pytest.raises(ShapeError, match="4D volume"):
            CenterPivotConv4d(2, 2, 3)(torch.randn(1, 2, 4, 4, 4))


class TestConv4d:
    @pytest.mark.parametrize("kernel_size,stride", [(3, 1), (3, 2), (5, 2)])
    def test_equals_reference(self, kernel_size, stride):
        x = torch.randn(2, 2, 5, 4, 6, 7)
        w = torch.randn(3, 2, *(kernel_size,) * 4)
        bias = torch.randn(3)
        assert (
            rel_err(
                conv4d(x, w, bias, stride), reference_conv4d(x, w, bias, stride, kernel_size // 2)
            )
            < 1e-5
        )

    def test_module_with_center_pivot_kernel_equals_center_pivot(self):
        cp = CenterPivotConv4d(2, 3, 3, stride=2)
        full = Conv4d(2, 3, 3, stride=2)
        with torch.no_grad():
            full.weight.copy_(center_pivot_kernel(cp.weight_src, cp.weight_trg))
            full.bias.copy_(cp.bias)
        x = torch.randn(1, 2, 4, 5, 6, 3)
        assert rel_err(full(x).detach(), cp(x).detach()) < 1e-5


class TestLayoutHelpers:
    def test_group_norm_4d_matches_nn_groupnorm(self):
        x = torch.randn(2, 8, 3, 4, 5, 6)
        gn = torch.nn.GroupNorm(4, 8)
        torch.nn.init.normal_(gn.weight)
        torch.nn.init.normal_(gn.bias)
        out = group_norm_4d(to_channels_last_4d(x), 4, gn.weight, gn.bias, gn.eps)
        assert is_channels_last_4d(out)
        assert torch.allclose(out, gn(x), atol=1e-5)

    def test_pointwise_conv4d(self):
        x, w, b = torch.randn(2, 3, 2, 3, 4, 5), torch.randn(6, 3), torch.randn(6)
        ref = torch.einsum("bcpqrs,oc->bopqrs", x, w) + b.view(1, -1, 1, 1, 1, 1)
        assert torch.allclose(pointwise_conv4d(x, w, b), ref, atol=1e-5)

    def test_subsample_target_matches_conv_output_size(self):
        x = torch.randn(1, 2, 3, 3, 7, 6)
        out = center_pivot_conv4d(x, torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3), stride=2)
        assert subsample_target(x, 3, 2).shape[-2:] == out.shape[-2:] == (4, 3)


class TestSourceConv:
    """The source branch's two implementations (dilated 2D, 3D with a (k, k, 1) kernel) agree."""

    @pytest.mark.parametrize("kernel_size,padding", [(3, 1), (3, 0), (5, 2)])
    @pytest.mark.parametrize("batch", [1, 2])
    def test_both_kinds_give_the_same_sums_and_gradients(self, kernel_size, padding, batch):
        torch.manual_seed(0)
        x = to_channels_last_4d(torch.randn(batch, 3, 6, 5, 4, 7))
        w, bias = torch.randn(4, 3, kernel_size, kernel_size), torch.randn(4)
        outs, grads = [], []
        for kind in cp4d.SOURCE_CONV_KINDS:
            xg, wg = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
            y = cp4d.source_conv(xg, wg, bias, padding, kind)
            assert is_channels_last_4d(y) or kind == "conv3d"  # a batch of 1 gives conv3d's NCDHW
            y.square().sum().backward()
            outs.append(y.detach())
            grads.append((xg.grad, wg.grad))
        assert outs[0].shape == outs[1].shape == (batch, 4, 6 + 2 * padding - kernel_size + 1,
                                                  5 + 2 * padding - kernel_size + 1, 4, 7)
        assert torch.allclose(outs[0], outs[1], atol=1e-5)
        for a, b in zip(*grads):
            # the two kinds add the same products in another order: float32 rounding grows with
            # the gradient's scale (entries of ~1e3-1e4 here), so the tolerance follows that scale
            scale = float(b.abs().max())
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale)

    def test_the_kind_is_chosen_per_device_and_an_unknown_one_is_named(self, monkeypatch):
        x = torch.randn(1, 2, 3, 3, 3, 3)
        w = torch.randn(2, 2, 3, 3)
        calls = []
        real = F.conv3d
        monkeypatch.setattr(cp4d.F, "conv3d", lambda *a, **k: calls.append(1) or real(*a, **k))
        center_pivot_conv4d(x, w, w)
        assert calls == [] and cp4d.SOURCE_CONV["cpu"] == "dilated-conv2d"
        monkeypatch.setitem(cp4d.SOURCE_CONV, "cpu", "conv3d")
        center_pivot_conv4d(x, w, w)
        assert calls == [1]
        with pytest.raises(ConfigError, match="dilated-conv2d"):
            cp4d.source_conv(x, w, None, 1, "winograd")
