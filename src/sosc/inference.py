"""Match the keypoints of your own image pair: load a trained matcher, run it (with KBC), save.

The work behind ``sosc-match`` (its command line, parsed without torch, is
:mod:`sosc.match_cli`): :func:`sosc.checkpoint.load_module`, :func:`build_matcher`,
:func:`load_image`, :func:`parse_keypoints` and :func:`match_pair`; :func:`main` runs the
command in Python and returns its result.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sosc.checkpoint import load_module, matcher_config_of
from sosc.data.images import read_image
from sosc.errors import ConfigError, ShapeError, SoscError
from sosc.kbc import REASONS, KBCConfig, KBCWrapper
from sosc.match_cli import build_parser, command, kbc_config_from
from sosc.outputs import check_output_file


def load_image(path: str | Path, background: float | str | Sequence[float] = "white") -> torch.Tensor:
    """Read an image file as ``(3, H, W)`` float RGB in ``[0, 1]`` as viewers show it.

    Any format PIL reads (:func:`sosc.data.images.read_image`): the EXIF orientation is applied
    (keypoints are read off the image as shown), 16-bit images are scaled by 65535,
    transparent pixels are composited over ``background`` (``"white"``, ``"black"``, a grey
    level or RGB in ``[0, 1]``; a warning says so), a truncated file is reported as such.
    """
    return read_image(
        Path(path), SoscError, if_missing="check the path", if_unreadable="give a JPEG, PNG or another format PIL reads",
        if_damaged="re-save or re-download it", orientation="apply", background=background,
    )


def parse_keypoints(text: str) -> torch.Tensor:
    """``(N, 2)`` float keypoints from ``"x,y x,y ..."`` (spaces or ``;`` between points) or from
    a JSON list ``[[x, y], ...]`` (the text of a file or of the argument).

    >>> parse_keypoints("10,20; 30.5,40").tolist()
    [[10.0, 20.0], [30.5, 40.0]]
    """
    text = text.strip()
    try:
        if text.startswith("["):
            points = [[float(v) for v in p] for p in json.loads(text)]
        else:
            points = [[float(v) for v in p.split(",")] for p in text.replace(";", " ").split()]
    except (ValueError, TypeError) as err:
        raise ShapeError(f"keypoints: cannot read {text[:60]!r} ({err}); give 'x,y x,y ...' or [[x, y], ...]") from err
    if not points or any(len(p) != 2 for p in points):
        raise ShapeError(f"keypoints: expected one or more (x, y) pairs, got {text[:60]!r}")
    return torch.tensor(points, dtype=torch.float32)


def as_keypoints(points: Any, name: str = "src_kps") -> torch.Tensor:
    """``(N, 2)`` float32 keypoints from a tensor, a numpy array or a list ``[[x, y], ...]``.

    >>> as_keypoints([[10, 20], (30.5, 40)]).tolist()
    [[10.0, 20.0], [30.5, 40.0]]

    Raises:
        ShapeError: naming ``name``, for values that are not numbers or not ``(N, 2)`` with ``N >= 1``.
    """
    if not isinstance(points, torch.Tensor):
        try:
            points = torch.as_tensor(np.asarray(points, dtype=np.float32))
        except (TypeError, ValueError) as err:
            raise ShapeError(f"{name}: expected (N, 2) (x, y) numbers, e.g. [[120, 80], [140, 95]]; got {points!r:.80} "
                             f"({err})") from err
    if points.dim() != 2 or points.shape[-1] != 2 or points.shape[0] == 0:
        raise ShapeError(f"{name}: expected (N, 2) (x, y) points, got shape {tuple(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise ShapeError(f"{name}: holds NaN or infinite values")
    return points.float()


def match_pair(
    matcher: Any,
    src_img: torch.Tensor,
    trg_img: torch.Tensor,
    src_kps: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    input_size: int | Sequence[int] = 256,
    kbc: KBCConfig | None = None,
) -> dict[str, Any]:
    """Match one pair: ``src_img``, ``trg_img`` ``(3, H, W)`` in ``[0, 1]`` (original sizes),
    ``src_kps`` ``(N, 2)`` ``(x, y)`` original source pixels: a tensor, a numpy array or a list
    ``[[x, y], ...]``.

    Returns a JSON-ready dict: ``kps`` ``N x [x, y]`` original target pixels (with KBC, unless
    ``kbc.enabled`` is false), ``plain_kps`` (without KBC), ``confidence`` (or ``None``),
    ``kbc`` (``reason``: why the pair zoomed or not, :data:`sosc.kbc.plan.REASONS`;
    ``refined``: pass 2 ran; ``from_pass2``: per keypoint, whether ``kps`` comes from pass 2;
    ``counts``: :meth:`sosc.kbc.KBCOutput.counts`; ``src_window``, ``trg_window`` as
    ``[x0, y0, x1, y1]``; ``options``: the KBC configuration used), ``matcher`` (the matcher's
    ``{"class_path", "init_args"}`` as a checkpoint records it, :func:`sosc.checkpoint.matcher_config_of`:
    the arguments it was built with, e.g. the FeatureMatcher's ``kernel_sigma``; ``None`` when
    they are unknown or not plain JSON values), ``src_size`` and
    ``trg_size`` as ``[H, W]`` (height first, as dataset items' ``src_size``/``trg_size``).
    :func:`sosc.viz.plot_result` draws it.
    """
    for name, img in (("src_img", src_img), ("trg_img", trg_img)):
        if img.dim() != 3 or img.shape[0] != 3:
            raise ShapeError(f"{name}: expected (3, H, W), got {tuple(img.shape)}")
    src_kps = as_keypoints(src_kps, "src_kps")
    h, w = src_img.shape[-2:]
    outside = (src_kps[:, 0] < 0) | (src_kps[:, 0] > w) | (src_kps[:, 1] < 0) | (src_kps[:, 1] > h)
    if bool(outside.any()):
        raise ShapeError(
            f"src_kps: keypoints {torch.nonzero(outside).flatten().tolist()} lie outside the {w}x{h} source image"
        )
    config = kbc or KBCConfig()
    wrapper = KBCWrapper(matcher, input_size=input_size, config=config)
    device = next((p.device for p in getattr(matcher, "parameters", lambda: iter(()))()), torch.device("cpu"))
    with torch.no_grad():
        info = wrapper.forward_with_info(
            [src_img.to(device)], [trg_img.to(device)], src_kps[None].to(device), None
        )

    def rows(t: torch.Tensor) -> list[list[float]]:
        return [[round(float(v), 2) for v in row] for row in t.cpu()]

    return {
        "kps": rows(info.kps[0]),
        "plain_kps": rows(info.plain_kps[0]),
        "confidence": None if info.confidence is None else [round(float(c), 4) for c in info.confidence[0].cpu()],
        "kbc": {
            "enabled": config.enabled,
            "target": config.target,
            "reason": REASONS[int(info.reason[0])],
            "refined": bool(info.refined[0]),
            "from_pass2": [bool(v) for v in info.from_pass2[0].cpu()],
            "counts": info.counts(),
            "src_window": rows(info.src_window)[0],
            "trg_window": rows(info.trg_window)[0],
            "options": dataclasses.asdict(wrapper.config),  # zoom_px "auto" resolved: the zoom used
        },
        "matcher": matcher_config_of(matcher),
        "src_size": [int(src_img.shape[-2]), int(src_img.shape[-1])],
        "trg_size": [int(trg_img.shape[-2]), int(trg_img.shape[-1])],
    }


def plot_pair(src_img: torch.Tensor, trg_img: torch.Tensor, src_kps: torch.Tensor, result: dict, path: Path,
              title: str | None = None) -> Path:
    """Save the match figure of a :func:`match_pair` result (:func:`sosc.viz.plot_result`):
    numbered keypoints, with and without KBC, KBC's windows and a zoom on each."""
    from sosc.viz import plot_result, save_figure

    fig = plot_result(src_img, trg_img, {**result, "src_kps": as_keypoints(src_kps).tolist()}, title=title)
    try:
        return save_figure(fig, path)
    except OSError as err:
        raise SoscError(f"--plot {path} cannot be written ({err.strerror or err})") from err
    finally:
        fig.clear()


#: KBCConfig fields ``sosc-match`` does not offer: a custom pair has no annotations to aim at,
#: and there is no training.
#: ``--matcher`` names that are not class paths.
MATCHER_ALIASES = {"feature": "sosc.matchers.FeatureMatcher"}


def _matcher_classes() -> list[str]:
    """The class paths of :mod:`sosc.matchers`' matchers (for error messages)."""
    import sosc.matchers

    names = [n for n in sosc.matchers.__all__ if (n.endswith("Matcher") and n != "Matcher") or n == "KBCNet"]
    return [f"sosc.matchers.{n}" for n in names]


def _matcher_class(path: str) -> type:
    """The class ``path`` names: an alias, a name of :mod:`sosc.matchers`, or a dotted class path."""
    path = MATCHER_ALIASES.get(path, path)
    module, _, name = path.rpartition(".")
    if not module:
        module = "sosc.matchers"
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"--matcher {path!r}: cannot import it ({err}); give a class path, one of "
            f"{', '.join(_matcher_classes())}, a class of your own package (mypkg.MyMatcher), or 'feature'"
        ) from err
    if not inspect.isclass(cls):
        raise ConfigError(f"--matcher {path!r} is a {type(cls).__name__}, not a class; give a matcher class")
    return cls


def _instantiate(cls: type, init_args: Mapping[str, Any], what: str) -> Any:
    """``cls(**init_args)``, nested ``{"class_path", "init_args"}`` values built first (as the
    ``sosc`` CLI does), a wrong argument named with the ones ``cls`` takes."""
    args = {}
    for key, value in init_args.items():
        if isinstance(value, Mapping) and "class_path" in value:
            value = _instantiate(_matcher_class(str(value["class_path"])), value.get("init_args") or {}, f"{what}.{key}")
        args[key] = value
    try:
        inspect.signature(cls).bind(**args)
    except TypeError as err:
        params = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        raise ConfigError(f"{what}: {cls.__module__}.{cls.__qualname__} {err}; it takes {', '.join(params)}") from err
    return cls(**args)


def build_matcher(matcher: str | Mapping[str, Any], init_args: str | Mapping[str, Any] | None = None) -> Any:
    """The matcher ``sosc-match --matcher`` names, built and in eval mode.

    Args:
        matcher: a class path (``"sosc.matchers.FeatureMatcher"``, ``"mypkg.MyMatcher"``), a
            name of :mod:`sosc.matchers` (``"KBCNet"``), ``"feature"`` (FeatureMatcher with its
            offline EfficientNet-Lite0 weights), or ``{"class_path": ..., "init_args": {...}}``
            (a dict or its JSON text, as in a ``sosc`` config).
        init_args: the class's arguments, a dict or JSON text; nested ``{"class_path", ...}``
            values are built too (e.g. the ``net`` of a :class:`~sosc.matchers.FlowMatcher`).
            They override the ``init_args`` of a ``class_path`` dict.

    Raises:
        ConfigError: a class that cannot be imported (naming the matchers that exist), JSON
            that does not parse, or arguments the class does not take (naming those it takes).

    >>> build_matcher("CallableMatcher", '{"fn": {"class_path": "torch.nn.Identity"}}').fn
    Identity()
    """
    def parse(text: str, option: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{option}: not valid JSON ({err.msg} at character {err.pos}): {text[:80]!r}") from err

    if isinstance(matcher, str) and matcher.lstrip().startswith("{"):
        matcher = parse(matcher, "--matcher")
    if isinstance(init_args, str):
        init_args = parse(init_args, "--matcher-args")
    if init_args is not None and not isinstance(init_args, Mapping):
        raise ConfigError(f"--matcher-args: expected a JSON object of the matcher's arguments, got {init_args!r}")
    if isinstance(matcher, Mapping):
        if "class_path" not in matcher:
            raise ConfigError(f"--matcher: a JSON matcher needs 'class_path' (and 'init_args'), got keys {sorted(matcher)}")
        path, args = str(matcher["class_path"]), {**(matcher.get("init_args") or {}), **(init_args or {})}
    else:
        path, args = matcher, dict(init_args or {})
    cls = _matcher_class(path)
    built = _instantiate(cls, args, f"--matcher {path}")
    return built.eval() if hasattr(built, "eval") else built


def default_input_size(matcher: Any, side: int = 256) -> int:
    """``side`` rounded down to the matcher's input multiple (252 for a patch-14 ViT).

    >>> default_input_size(type("M", (), {"input_multiple": 14})())
    252
    """
    from sosc.matchers.base import matcher_input_multiple

    multiple = matcher_input_multiple(matcher)
    return max(multiple, side // multiple * multiple)


def _background(text: str) -> str | tuple[float, ...]:
    """``--background``: a name, or one or three numbers separated by commas."""
    if text in ("white", "black"):
        return text
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise SoscError(f"--background: expected white, black, a grey level or r,g,b in [0, 1], got {text!r}") from err
    return values * 3 if len(values) == 1 else values


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``sosc-match``: see the module docstring and ``sosc-match --help``. Returns the result.

    Errors are raised (:class:`~sosc.errors.SoscError` for user mistakes); the installed script
    (:func:`command`) prints them on one line.
    """
    return run(build_parser().parse_args(argv))


def run(opts: argparse.Namespace) -> dict[str, Any]:
    """``sosc-match`` with parsed options (see :func:`main`). The images and keypoints are read
    before the matcher is built, so that a mistake in them is reported at once; ``--out`` and
    ``--plot`` first of all, so that a result is never computed and then lost."""
    for path, option in ((opts.out, "--out"), (opts.plot, "--plot")):
        if path:
            check_output_file(path, True, option, create_folder=False)
    background = _background(opts.background)
    src_img, trg_img = load_image(opts.src, background), load_image(opts.trg, background)
    if opts.kps_file:
        try:
            text = Path(opts.kps_file).read_text()
        except OSError as err:
            raise SoscError(f"--kps-file {opts.kps_file} cannot be read ({err.strerror or err}): check the path") from err
    else:
        text = opts.kps
    src_kps = parse_keypoints(text)
    if opts.ckpt:
        if opts.matcher_args is not None:
            raise SoscError("--matcher-args goes with --matcher; a checkpoint records its matcher's arguments")
        module = load_module(opts.ckpt, opts.config)
        matcher, input_size = module.matcher, opts.input_size or tuple(module.input_size or (256, 256))
    else:
        matcher = build_matcher(opts.matcher, opts.matcher_args)
        input_size = opts.input_size or default_input_size(matcher)
    # object-bbox and oracle need annotations that a custom pair lacks
    config = kbc_config_from(opts, enabled=not opts.no_kbc)
    try:
        matcher = matcher.to(opts.device) if hasattr(matcher, "to") else matcher
    except (RuntimeError, AssertionError, ValueError) as err:
        raise SoscError(f"--device {opts.device}: cannot use it ({err}); e.g. --device cpu") from err
    result = match_pair(matcher, src_img, trg_img, src_kps, input_size, config)
    result = {"src": opts.src, "trg": opts.trg, "src_kps": src_kps.tolist(), **result}
    payload = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in result.items()) + "\n}"
    if opts.out:
        try:
            Path(opts.out).write_text(payload + "\n")
        except OSError as err:
            raise SoscError(f"--out {opts.out} cannot be written ({err.strerror or err})") from err
    else:
        print(payload)
    if opts.plot:
        plot_pair(src_img, trg_img, src_kps, result, Path(opts.plot), title=f"{Path(opts.src).name} -> {Path(opts.trg).name}")
    return result


if __name__ == "__main__":
    command()
