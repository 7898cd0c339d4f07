"""The checkpoint record: what a checkpoint says about its matcher, written and read here only.

**The contract.** Every checkpoint that :class:`~sosc.module.CorrespondenceModule` writes
(``on_save_checkpoint``) carries, besides Lightning's ``state_dict`` and
``hyper_parameters``, a record under ``checkpoint["sosc"]``::

    {"format": 1,
     "sosc_version": "0.1.0",
     "matcher": {"class_path": "sosc.KBCNet", "init_args": {...}} | None,
     "input_size": [S_h, S_w] | None}

- ``matcher`` is the matcher's configuration: the exact ``class_path`` and ``init_args`` the
  ``sosc`` CLI parsed (the CLI hands them to the module in ``instantiate_classes``), or, for a
  module built in Python, the arguments the :class:`~sosc.matchers.base.Matcher` was
  constructed with when they are plain JSON values; ``None`` when neither is known.
- ``input_size`` is the network input size the module was trained or evaluated at.

It is read in two places, both here: :func:`check_state_dict` (called by the module's
``on_load_checkpoint``, before Lightning loads the weights) turns a checkpoint whose weights
do not fit the configured matcher into one clear :class:`~sosc.errors.ConfigError` naming
what it was trained with and what the config asks for; :func:`load_module` (``sosc-match``,
``sosc.inference``) rebuilds the module from the record alone, downloading nothing.
Checkpoints written before the record existed kept the matcher under
``hyper_parameters["matcher"]`` and the size under ``hyper_parameters["input_size"]``;
:func:`read_record` reads those too.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sosc.errors import ConfigError, SoscError

if TYPE_CHECKING:
    from sosc.module import CorrespondenceModule

RECORD_KEY = "sosc"
RECORD_FORMAT = 1

#: Matcher options that change neither the weights' names nor their shapes, and so never
#: explain a checkpoint that does not fit.
RUNTIME_OPTIONS = frozenset({"pretrained", "check_inputs", "return_scores", "grad_checkpointing",
                             "freeze_backbone", "temperature", "kernel_sigma", "max_cells"})


@dataclass
class CheckpointRecord:
    """The record of one checkpoint (see the module docstring)."""

    matcher: dict[str, Any] | None
    input_size: tuple[int, int] | None
    sosc_version: str | None = None


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def matcher_config_of(matcher: Any) -> dict[str, Any] | None:
    """``{"class_path", "init_args"}`` of a matcher built in Python, from the arguments that
    :class:`~sosc.matchers.base.Matcher` recorded, or ``None`` when they are unknown or not
    plain JSON values (e.g. an adapter around a network object)."""
    init_args = getattr(matcher, "init_args", None)
    if not isinstance(init_args, dict) or not _json_safe(init_args):
        return None
    cls = type(matcher)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def make_record(matcher_config: Mapping[str, Any] | None, input_size: Sequence[int] | None) -> dict[str, Any]:
    """The ``checkpoint["sosc"]`` dict (see the module docstring)."""
    from sosc import __version__

    return {
        "format": RECORD_FORMAT,
        "sosc_version": __version__,
        "matcher": copy.deepcopy(dict(matcher_config)) if matcher_config is not None else None,
        "input_size": [int(s) for s in input_size] if input_size is not None else None,
    }


def read_record(checkpoint: Mapping[str, Any]) -> CheckpointRecord:
    """The record of a loaded checkpoint dict (the new key, else the older hyperparameters)."""
    record = checkpoint.get(RECORD_KEY)
    if isinstance(record, Mapping):
        size = record.get("input_size")
        return CheckpointRecord(record.get("matcher"), tuple(size) if size else None, record.get("sosc_version"))
    hparams = checkpoint.get("hyper_parameters") or {}
    matcher = hparams.get("matcher")
    size = hparams.get("input_size")
    if isinstance(size, int):
        size = (size, size)
    return CheckpointRecord(
        matcher if isinstance(matcher, Mapping) and "class_path" in matcher else None,
        tuple(int(s) for s in size) if size else None,
    )


def _describe(config: Mapping[str, Any] | None) -> str:
    if not config:
        return "an unrecorded matcher"
    args = {k: v for k, v in (config.get("init_args") or {}).items() if k not in RUNTIME_OPTIONS}
    return f"{config.get('class_path')} {json.dumps(args, sort_keys=True, default=str)}"


def _differences(trained: Mapping[str, Any] | None, asked: Mapping[str, Any] | None) -> list[str]:
    if not trained or not asked:
        return []
    out = []
    if trained.get("class_path") != asked.get("class_path"):
        out.append(f"class_path: {trained.get('class_path')} vs {asked.get('class_path')}")
    a, b = trained.get("init_args") or {}, asked.get("init_args") or {}
    for key in sorted(set(a) | set(b)):
        if key not in RUNTIME_OPTIONS and a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} vs {b.get(key)!r}")
    return out


def check_state_dict(
    checkpoint: Mapping[str, Any],
    own_state: Mapping[str, torch.Tensor],
    matcher_config: Mapping[str, Any] | None,
    path: str | Path = "the checkpoint",
) -> None:
    """Raise :class:`ConfigError` when the checkpoint's weights do not fit ``own_state``.

    The message names what the checkpoint was trained with (its record), what the config asks
    for (``matcher_config``), the options that differ, and a few of the weights that do not fit,
    instead of the raw list of every missing and unexpected key.
    """
    theirs = checkpoint.get("state_dict") or {}
    missing = [k for k in own_state if k not in theirs]
    unexpected = [k for k in theirs if k not in own_state]
    shapes = [k for k in own_state if k in theirs and tuple(own_state[k].shape) != tuple(theirs[k].shape)]
    if not (missing or unexpected or shapes):
        return
    record = read_record(checkpoint)
    diff = _differences(record.matcher, matcher_config)
    detail = "; ".join(
        part for part in (
            f"{len(missing)} weights missing (e.g. {missing[:2]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})" if unexpected else "",
            f"{len(shapes)} of another shape (e.g. {shapes[0]}: {tuple(theirs[shapes[0]].shape)} in the checkpoint, "
            f"{tuple(own_state[shapes[0]].shape)} here)" if shapes else "",
        ) if part
    )
    raise ConfigError(
        f"{path} does not fit the configured matcher: it was trained with {_describe(record.matcher)}, "
        f"the config asks for {_describe(matcher_config)}"
        + (f" (differences: {', '.join(diff)})" if diff else "")
        + f". {detail}. Use the config the checkpoint was trained with, or `sosc-match --ckpt` / "
        "`sosc.inference.load_module`, which rebuild the matcher from the checkpoint's record."
    )


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"cannot import {path!r} recorded in the checkpoint ({err}); install the package "
                          "that defines it") from err


def instantiate(config: Mapping[str, Any]) -> Any:
    """Build ``{"class_path", "init_args"}`` (nested ones too), as jsonargparse does."""
    args = {k: instantiate(v) if isinstance(v, Mapping) and "class_path" in v else v
            for k, v in (config.get("init_args") or {}).items()}
    return _class(str(config["class_path"]))(**args)


def offline_matcher_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with weights that would come from timm's hub or a file replaced by
    ``pretrained=False`` (the checkpoint holds every weight); packaged weights stay, since they
    also set the input normalisation, which the state dict lacks."""
    config = copy.deepcopy(dict(config))
    init_args = config.setdefault("init_args", {})
    if init_args.get("pretrained") not in (None, False, "package"):
        init_args["pretrained"] = False
    return config


def load_module(
    checkpoint: str | Path, config: str | Path | None = None, map_location: str | torch.device = "cpu"
) -> CorrespondenceModule:
    """A :class:`~sosc.module.CorrespondenceModule` from a checkpoint that ``sosc fit`` wrote.

    Without ``config`` the matcher is rebuilt from the checkpoint's record
    (:func:`offline_matcher_config`: nothing is downloaded); with ``config`` (the training
    config file, for checkpoints without a record) the model is built from it as ``sosc``
    would. Then the weights are loaded strictly. Returns the module in eval mode, with
    ``input_size`` set to the record's.

    Raises:
        SoscError: the file does not exist; ConfigError: no record and no config, or weights
            that do not fit.
    """
    from sosc.module import CorrespondenceModule

    path = Path(checkpoint)
    if not path.is_file():
        raise SoscError(f"checkpoint {path} does not exist: check the path")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    record = read_record(ckpt)
    if config is not None:
        from sosc.cli import main as sosc_cli

        module = sosc_cli(["--config", str(config), "--trainer.logger", "false"], run=False).model
    else:
        if record.matcher is None:
            raise ConfigError(
                f"checkpoint {path} does not record its matcher (written by an older sosc, or by a module "
                "whose matcher wraps a network object): also give the training config "
                "(`sosc-match --config <config.yaml>`, `load_module(checkpoint, config=...)`)"
            )
        matcher = instantiate(offline_matcher_config(record.matcher))
        module = CorrespondenceModule(matcher, input_size=record.input_size)
        module.matcher_config = record.matcher
    if module.input_size is None and record.input_size is not None:
        module.input_size = tuple(record.input_size)
    check_state_dict(ckpt, module.state_dict(), module.matcher_config or record.matcher, path)
    module.load_state_dict(ckpt["state_dict"], strict=True)
    return module.eval()
