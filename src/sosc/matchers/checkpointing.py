"""Activation checkpointing: recompute a block's activations in backward instead of storing them.

A training step of KBCNet at 512 x 512 stores, per pair, about 1.4 GiB of ResNet-101
activations and 0.4 GiB of decoder volume activations (``scripts/activation_memory.py``).
Checkpointing every block keeps only each block's input and recomputes the block during the
backward pass: about one extra forward of compute for a fraction of the memory. Only used when
gradients are being recorded; evaluation and frozen parts run as usual. As with any
checkpointing, a BatchNorm layer in training mode inside a checkpointed block sees its batch
twice (forward and recompute), so its running statistics move twice per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def needs_checkpoint(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether running ``module`` on ``x`` is a training step worth checkpointing: the module
    is in training mode and a graph is being recorded."""
    if not (module.training and torch.is_grad_enabled()):
        return False
    return x.requires_grad or any(p.requires_grad for p in module.parameters())


def run_checkpointed(module: nn.Module | Callable, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, with its activations recomputed in backward when it records a graph.

    An in-place module (``inplace=True``) runs as is: recomputing it would overwrite the
    input that the checkpoint keeps.
    """
    if isinstance(module, nn.Module) and (getattr(module, "inplace", False) is True or not needs_checkpoint(module, x)):
        return module(x)
    return checkpoint(module, x, use_reentrant=False)


class CheckpointedSequential(nn.Sequential):
    """An ``nn.Sequential`` that checkpoints each of its children (same children, same
    state-dict keys as the sequential it replaces)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = run_checkpointed(block, x)
        return x


def checkpoint_stages(model: nn.Module) -> int:
    """Make every stage of a CNN checkpoint its blocks, in place; returns how many stages.

    A stage is an ``nn.Sequential`` whose children are not themselves sequentials (a ResNet
    ``layerN``, an EfficientNet stage inside ``blocks``); sequentials of sequentials are
    searched recursively. The model's forward is unchanged: it calls the stage, which now runs
    each block under :func:`torch.utils.checkpoint.checkpoint` while training.

    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()))
    >>> checkpoint_stages(net), type(net[1]).__name__
    (1, 'CheckpointedSequential')
    """
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Sequential) and not isinstance(child, CheckpointedSequential):
            if any(isinstance(c, nn.Sequential) for c in child.children()):
                count += checkpoint_stages(child)
            elif len(child) > 1:
                setattr(model, name, CheckpointedSequential(*child))
                count += 1
        elif not isinstance(child, nn.Sequential):
            count += checkpoint_stages(child)
    return count
