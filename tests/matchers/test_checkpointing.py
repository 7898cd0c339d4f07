"""Activation checkpointing: same loss and gradients, fewer stored activations, same weights' keys."""

from __future__ import annotations

import torch
from torch import nn

from sosc.losses import keypoint_epe
from sosc.matchers.backbone import Backbone
from sosc.matchers.checkpointing import CheckpointedSequential, checkpoint_stages, needs_checkpoint
from sosc.matchers.correlation import CorrelationDecoder
from sosc.matchers.kbcnet import KBCNet


def saved_bytes(fn) -> int:
    """Bytes of the storages autograd keeps outside checkpointed regions while ``fn()`` runs."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_stages_of_a_resnet_are_checkpointed_with_unchanged_keys():
    plain = Backbone("resnet18", pretrained=False)
    keys = list(plain.state_dict())
    ckpt = Backbone("resnet18", pretrained=False, grad_checkpointing=True)
    assert list(ckpt.state_dict()) == keys
    assert sum(isinstance(m, CheckpointedSequential) for m in ckpt.modules()) == 4  # layer1..layer4
    ckpt.load_state_dict(plain.state_dict())


def test_frozen_backbone_is_not_checkpointed():
    frozen = Backbone("resnet18", pretrained=False, freeze=True, grad_checkpointing=True)
    assert not any(isinstance(m, CheckpointedSequential) for m in frozen.modules())


def test_nested_sequentials_and_single_blocks():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()), nn.Sequential(nn.Identity())))
    assert checkpoint_stages(net) == 1
    assert isinstance(net[1][0], CheckpointedSequential) and not isinstance(net[1][1], CheckpointedSequential)


def test_no_checkpoint_without_a_graph():
    conv = nn.Conv2d(1, 1, 1)
    x = torch.zeros(1, 1, 2, 2)
    assert needs_checkpoint(conv, x)
    with torch.no_grad():
        assert not needs_checkpoint(conv, x)
    conv.eval()
    assert not needs_checkpoint(conv, x)  # evaluation with gradients on: nothing to save
    conv.train().requires_grad_(False)
    assert not needs_checkpoint(conv, x)


def _grads(grad_checkpointing: bool):
    torch.manual_seed(0)
    net = KBCNet(backbone="resnet18", decoder_channels=(8, 8), groups=2, channels=32, heads=2,
                 grad_checkpointing=grad_checkpointing).train()
    torch.manual_seed(1)
    src, trg = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    kps, valid = torch.rand(2, 5, 2) * 64, torch.ones(2, 5, dtype=torch.bool)
    loss = keypoint_epe(net(src, trg, kps, valid).kps, torch.rand(2, 5, 2) * 64, valid, 64)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in net.named_parameters() if p.requires_grad}


def test_kbcnet_gives_the_same_loss_and_gradients_with_checkpointing():
    loss, grads = _grads(False)
    loss_ck, grads_ck = _grads(True)
    assert torch.allclose(loss, loss_ck, atol=1e-6)
    assert grads.keys() == grads_ck.keys()
    for name, g in grads.items():
        assert g is not None and grads_ck[name] is not None, name
        assert torch.allclose(g, grads_ck[name], rtol=1e-4, atol=1e-6), name


def test_decoder_stores_far_less_with_checkpointing():
    corr = torch.rand(1, 4, 8, 8, 8, 8, requires_grad=True)

    def stored(flag: bool) -> int:
        torch.manual_seed(0)
        decoder = CorrelationDecoder(4, (16, 16, 16), grad_checkpointing=flag)
        return saved_bytes(lambda: decoder(corr).sum())

    # each block keeps its input instead of its conv and norm outputs: about half here
    assert stored(True) < 0.6 * stored(False)
