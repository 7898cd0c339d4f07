"""Match figures a person can check at a glance: where each source keypoint landed, with and without KBC.

:func:`plot_match` draws one pair: the source and the target side by side, each keypoint
numbered (from 1) in its own colour, the same in every panel, joined across the pair by a
line of that colour. With ground truth, each prediction is drawn correct (a circle with a
green rim) or wrong (a cross with a red rim) at PCK@``alpha`` and joined to its ground
truth (a hollow diamond) by an error line. When KBC zoomed, the figure has two rows,
without KBC (plain pass) and with KBC, each with the full images (KBC's windows drawn on both)
and a zoom on each window, so that a small object is not a blob in a large panel; the
keypoints of the zoomed pair that kept pass 1 are ringed. When KBC did not zoom (or did not
run), one row says why, and its predictions are drawn once; a zoom on the keypoints is
added for display when they are small in their image. The legend is below the panels,
never over an image.

:func:`plot_result` draws a :func:`sosc.inference.match_pair` result (``sosc-match --plot``,
``sosc-app``), :func:`plot_output` one pair of a :class:`~sosc.kbc.KBCOutput`, and
:func:`save_figure` writes a PNG. Matplotlib is imported when a figure is drawn, and only its
object API is used (a ``Figure`` on an Agg canvas, never pyplot's global state or backend), so
figures can be drawn in threads (the app) and in notebooks alike.

Conventions: images ``(3, H, W)`` float tensors in ``[0, 1]`` (or ``(H, W, 3)`` / ``(H, W)``
arrays, uint8 or float, or PIL images); keypoints ``(N, 2)`` ``(x, y)`` original pixels as
tensors, arrays or lists; windows ``(x0, y0, x1, y1)`` original pixels; the image spans
``[0, W] x [0, H]``; ``valid`` ``(N,)`` bool (invalid keypoints are not drawn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sosc.errors import ShapeError, SoscError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: One colour per keypoint, cycled beyond its length (bright on photographs; no pure red or
#: green, which mean wrong and correct).
PALETTE = (
    "#4da3ff", "#ffa31a", "#ffe433", "#c77dff", "#33e0e0", "#ff66d9", "#ffffff", "#d4a017",
    "#8fa8ff", "#ff9e80", "#00b3a4", "#e3c4ff", "#c2703d", "#b0b0b0",
)
CORRECT, WRONG = "#1fe01f", "#ff2020"
#: How KBC's windows are drawn: a white line under a black dashed one (visible on any image).
WINDOW_STYLE = {"under": "white", "over": "black"}
#: Height of one panel, inches; the figure is MIN_WIDTH to MAX_WIDTH inches wide.
PANEL_HEIGHT = 4.0
MIN_WIDTH, MAX_WIDTH = 7.5, 18.0
#: Beside zoom panels, the full images are drawn at this share of the zooms' height.
FULL_SHARE = 0.6
#: Zoom panels are added for display when the keypoints span less than this share of their
#: image's longer side (and KBC did not zoom).
DISPLAY_ZOOM_BELOW = 0.2
#: A window is shown in a zoom panel when it magnifies at least this much.
MIN_ZOOM_PANEL = 1.5
#: Inside KBC's window, the zoom panel shows the keypoints' part of it when they span less
#: than this share of the window's side (the window itself is drawn on the full panel).
TIGHTEN_BELOW = 0.4
#: Numbers and PCK circles are drawn in a panel where keypoints are at least this many
#: display points apart (median nearest-neighbour distance); elsewhere the zoom panel has them.
MIN_LABEL_SPACING_PT = 9.0


def keypoint_colours(n: int) -> list[str]:
    """``n`` colours, one per keypoint: :data:`PALETTE`, then evenly spaced hues.

    >>> keypoint_colours(2)
    ['#4da3ff', '#ffa31a']
    """
    if n <= len(PALETTE):
        return list(PALETTE[:n])
    import colorsys

    extra = [colorsys.hsv_to_rgb((i / (n - len(PALETTE)) + 0.07) % 1.0, 0.55, 1.0) for i in range(n - len(PALETTE))]
    return [*PALETTE, *("#" + "".join(f"{round(255 * c):02x}" for c in rgb) for rgb in extra)]


def as_image_array(image: Any, name: str = "image") -> np.ndarray:
    """``(H, W, 3)`` float array in ``[0, 1]`` from a ``(3, H, W)`` tensor in ``[0, 1]``, an
    ``(H, W, 3)`` or ``(H, W)`` array (uint8 0-255 or float 0-1) or a PIL image.

    >>> as_image_array(np.zeros((4, 5), np.uint8)).shape
    (4, 5, 3)
    """
    if hasattr(image, "detach"):  # a torch tensor, channels first
        array = image.detach().float().cpu().numpy()
        if array.ndim != 3 or array.shape[0] not in (1, 3):
            raise ShapeError(f"{name}: expected a (3, H, W) tensor, got {tuple(array.shape)}")
        array = np.moveaxis(array, 0, -1)
    else:
        array = np.asarray(image)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        if array.ndim == 3 and array.shape[-1] == 4:
            array = array[..., :3]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3) or array.shape[0] == 0 or array.shape[1] == 0:
        raise ShapeError(f"{name}: expected an image (H, W, 3), (H, W) or (3, H, W), got shape {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def as_points(points: Any, name: str, n: int | None = None) -> np.ndarray:
    """``(N, 2)`` float64 ``(x, y)`` from a tensor, an array or a list (``N`` checked when given).

    >>> as_points([[1, 2]], "kps").tolist()
    [[1.0, 2.0]]
    """
    if hasattr(points, "detach"):
        points = points.detach().float().cpu().numpy()
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[-1] != 2 or (n is not None and len(array) != n):
        want = f"({n}, 2)" if n is not None else "(N, 2)"
        raise ShapeError(f"{name}: expected {want} (x, y) points, got shape {array.shape}")
    return array


def _window(window: Any, name: str) -> np.ndarray | None:
    if window is None:
        return None
    if hasattr(window, "detach"):
        window = window.detach().float().cpu().numpy()
    box = np.asarray(window, dtype=np.float64).reshape(-1)
    if box.shape != (4,):
        raise ShapeError(f"{name}: expected (x0, y0, x1, y1), got shape {np.shape(window)}")
    return None if not np.isfinite(box).all() else box


def _is_full(window: np.ndarray | None, image: np.ndarray) -> bool:
    h, w = image.shape[:2]
    return window is None or bool(np.allclose(window, [0, 0, w, h], atol=0.5))


def _zoom_box(window: np.ndarray | None, image: np.ndarray) -> np.ndarray | None:
    """``window`` when it magnifies by at least :data:`MIN_ZOOM_PANEL` (else the full panel is enough)."""
    if window is None:
        return None
    h, w = image.shape[:2]
    factor = min(w / max(window[2] - window[0], 1e-6), h / max(window[3] - window[1], 1e-6))
    return window if factor >= MIN_ZOOM_PANEL else None


def _tighten(window: np.ndarray | None, points: np.ndarray) -> np.ndarray | None:
    """The part of ``window`` around ``points`` (those inside it) when they span less than
    :data:`TIGHTEN_BELOW` of its side: a few keypoints on a small object stay readable."""
    if window is None:
        return None
    inside = points[(points[:, 0] >= window[0]) & (points[:, 0] <= window[2]) &
                    (points[:, 1] >= window[1]) & (points[:, 1] <= window[3])]
    side = float(max(window[2] - window[0], window[3] - window[1]))
    if len(inside) < 2 or float((inside.max(0) - inside.min(0)).max()) >= TIGHTEN_BELOW * side:
        return window
    lo, hi = inside.min(0), inside.max(0)
    half = max(float((hi - lo).max()) * 0.9, 0.2 * side)
    cx, cy = (lo + hi) / 2
    return np.array([max(window[0], cx - half), max(window[1], cy - half),
                     min(window[2], cx + half), min(window[3], cy + half)])


def _display_box(points: np.ndarray, image: np.ndarray) -> np.ndarray | None:
    """A box around ``points`` for a display zoom, or None when they are large in their image."""
    if len(points) == 0:
        return None
    h, w = image.shape[:2]
    lo, hi = points.min(0), points.max(0)
    side = float((hi - lo).max())
    if side >= DISPLAY_ZOOM_BELOW * max(h, w):
        return None
    half = max(side * 0.8, 0.06 * max(h, w), 12.0)
    cx, cy = (lo + hi) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def _correct(pred: np.ndarray, gt: np.ndarray | None, bound: float | None, alpha: float) -> np.ndarray | None:
    if gt is None or bound is None:
        return None
    return np.linalg.norm(pred - gt, axis=-1) <= alpha * bound


def _pyplot_free_figure(width: float, height: float, dpi: int) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # matplotlib is a dependency; a trimmed install may lack it
        raise SoscError("match figures need matplotlib: pip install matplotlib") from err
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


class _Pair:
    """What one figure shows (numpy, original pixels), checked once."""

    def __init__(self, src_img, trg_img, src_kps, kps, plain_kps, gt_kps, valid, pck_bound, alpha,
                 src_window, trg_window, from_pass2, reason) -> None:
        self.src = as_image_array(src_img, "src_img")
        self.trg = as_image_array(trg_img, "trg_img")
        self.src_kps = as_points(src_kps, "src_kps")
        n = len(self.src_kps)
        self.kps = as_points(kps, "kps", n)
        self.plain = None if plain_kps is None else as_points(plain_kps, "plain_kps", n)
        self.gt = None if gt_kps is None else as_points(gt_kps, "gt_kps", n)
        self.valid = np.ones(n, bool) if valid is None else _flags(valid, "valid", n)
        self.from_pass2 = None if from_pass2 is None else _flags(from_pass2, "from_pass2", n)
        if self.gt is not None and pck_bound is None:
            raise ShapeError("pck_bound: needed with gt_kps (the L of PCK, original target pixels)")
        self.bound = None if pck_bound is None else float(pck_bound)
        self.alpha = float(alpha)
        self.src_window, self.trg_window = _window(src_window, "src_window"), _window(trg_window, "trg_window")
        self.reason = reason
        windows_differ = not (_is_full(self.src_window, self.src) and _is_full(self.trg_window, self.trg))
        self.zoomed = self.plain is not None and (reason == "zoomed" or (reason is None and windows_differ))
        self.colours = keypoint_colours(n)

    @property
    def n(self) -> int:
        return len(self.src_kps)


def _flags(values: Any, name: str, n: int) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=bool).reshape(-1)
    if len(array) != n:
        raise ShapeError(f"{name}: expected {n} flags, got {len(array)}")
    return array


def plot_match(
    src_img: Any,
    trg_img: Any,
    src_kps: Any,
    kps: Any,
    *,
    plain_kps: Any = None,
    gt_kps: Any = None,
    valid: Any = None,
    pck_bound: float | None = None,
    alpha: float = 0.1,
    src_window: Any = None,
    trg_window: Any = None,
    from_pass2: Any = None,
    reason: str | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """The match figure of one pair (see the module docstring); returns a matplotlib ``Figure``.

    Args:
        src_img, trg_img: the original images (module docstring for the accepted types).
        src_kps: ``(N, 2)`` source keypoints, original source pixels.
        kps: ``(N, 2)`` the predicted target keypoints (KBC's result when KBC ran).
        plain_kps: ``(N, 2)`` the plain pass's (without KBC), or None.
        gt_kps: ``(N, 2)`` ground-truth target keypoints, or None; then ``pck_bound`` (the
            ``L`` of PCK, target pixels) and ``alpha`` decide correct and wrong.
        valid: ``(N,)`` bool, keypoints to draw (default all).
        src_window, trg_window: KBC's windows ``(x0, y0, x1, y1)`` (None: not drawn).
        from_pass2: ``(N,)`` bool, the keypoint's ``kps`` come from pass 2; the others of a
            zoomed pair are ringed as "kept pass 1".
        reason: why KBC zoomed or not (:data:`sosc.kbc.plan.REASONS`); two rows (without
            and with KBC) when ``"zoomed"``, or when it is None and a window is not the full image.
        title: a first line of the figure's title (e.g. the pair's name).
        dpi: dots per inch of the figure (a 4-panel figure is about 1,500 px wide at 100).

    Raises:
        ShapeError: naming the argument, for an image or points of the wrong shape, or
            ``gt_kps`` without ``pck_bound``.
    """
    pair = _Pair(src_img, trg_img, src_kps, kps, plain_kps, gt_kps, valid, pck_bound, alpha,
                 src_window, trg_window, from_pass2, reason)
    if pair.zoomed:
        rows = [("without KBC (plain pass)", pair.plain, False), ("with KBC", pair.kps, True)]
        kbc_zooms = (_tighten(_zoom_box(pair.src_window, pair.src), pair.src_kps[pair.valid]),
                     _tighten(_zoom_box(pair.trg_window, pair.trg),
                              (pair.kps if pair.gt is None else pair.gt)[pair.valid]))
    else:
        rows = [(_single_row_label(pair), pair.kps, False)]
        kbc_zooms = (None, None)
    # where KBC did not zoom an image, its keypoints (the truth on the target) are zoomed for display
    shown = pair.valid
    display = (_display_box(pair.src_kps[shown], pair.src),
               _display_box((pair.kps if pair.gt is None else pair.gt)[shown], pair.trg))
    zooms = tuple(k if k is not None else d for k, d in zip(kbc_zooms, display))
    displayed = {side: kbc is None and box is not None for side, kbc, box in zip(("src", "trg"), kbc_zooms, zooms)}
    columns: list[tuple[str, np.ndarray | None]] = [("src", None), ("trg", None)]
    columns += [(side, box) for side, box in zip(("src", "trg"), zooms) if box is not None]

    # full images smaller than the zooms beside them: the zooms carry the detail
    aspects = [_aspect(pair.src if side == "src" else pair.trg, box) * (FULL_SHARE if box is None and
                                                                       len(columns) > 2 else 1.0)
               for side, box in columns]
    height = PANEL_HEIGHT
    width = sum(aspects) * height + 0.4
    if width > MAX_WIDTH:
        height *= MAX_WIDTH / width
        width = MAX_WIDTH
    width = max(width, MIN_WIDTH)
    fig = _pyplot_free_figure(width, height * len(rows) + 1.3, dpi)
    grid = fig.add_gridspec(len(rows), len(columns), width_ratios=aspects)
    legend_needs: set[str] = set()
    for r, (label, pred, is_kbc) in enumerate(rows):
        axes = []
        for c, (side, box) in enumerate(columns):
            ax = fig.add_subplot(grid[r, c])
            image = pair.src if side == "src" else pair.trg
            _show(ax, image, box)
            window = (pair.src_window if side == "src" else pair.trg_window) if pair.zoomed else None
            if box is None and window is not None and not _is_full(window, image):
                _draw_window(ax, window, f"window-{side}")
                legend_needs.add("window")
            if box is None and displayed[side]:
                _draw_display_box(ax, zooms[0 if side == "src" else 1], f"display-zoom-{side}")
                legend_needs.add("display")
            if box is not None:
                _style_zoom(ax, displayed[side])
                ax.set_label(f"zoom-{side}")
            else:
                ax.set_label(f"full-{side}")
            only = sum(s == side for s, _ in columns) == 1
            if side == "src":
                _draw_source(ax, pair, box is not None, only)
            else:
                legend_needs |= _draw_target(ax, pair, pred, is_kbc and pair.zoomed, box is not None, only)
            window_box = pair.src_window if side == "src" else pair.trg_window
            zoom_kind = ("the keypoints (display only)" if displayed[side] else "KBC's window"
                         if box is None or np.allclose(box, window_box) else "the keypoints in KBC's window")
            ax.set_title(_panel_title(pair, side, box, zoom_kind, label, pred, is_kbc), fontsize=9)
            axes.append(ax)
        _join(fig, axes[0], axes[1], pair, pred)
        if len(columns) == 4:
            _join(fig, axes[2], axes[3], pair, pred)
        axes[0].set_ylabel(label, fontsize=10, fontweight="bold")
    fig.suptitle(_figure_title(pair, title), fontsize=10)
    _legend(fig, pair, legend_needs)
    return fig


def _full(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.array([0.0, 0.0, w, h])


def _aspect(image: np.ndarray, box: np.ndarray | None) -> float:
    if box is None:
        box = _full(image)
    w, h = box[2] - box[0], box[3] - box[1]
    return float(min(max(w / max(h, 1e-6), 0.4), 2.5))


def _single_row_label(pair: _Pair) -> str:
    if pair.plain is None and pair.reason is None:
        return "prediction"
    return "without KBC" if pair.reason in ("kbc off", None) else "KBC did not zoom"


def _show(ax: Axes, image: np.ndarray, box: np.ndarray | None) -> None:
    h, w = image.shape[:2]
    ax.imshow(image, extent=(0, w, h, 0), interpolation="antialiased" if box is None else "bilinear")
    ax.set_facecolor("#3a3a3a")
    if box is not None:
        ax.set_xlim(box[0], box[2])
        ax.set_ylim(box[3], box[1])
    else:
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_window(ax: Axes, window: np.ndarray, gid: str) -> None:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = window
    for colour, style, lw in ((WINDOW_STYLE["under"], "-", 2.4), (WINDOW_STYLE["over"], (0, (3, 3)), 1.2)):
        rect = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle=style, linewidth=lw,
                         zorder=3)
        rect.set_gid(gid)
        ax.add_patch(rect)


def _draw_display_box(ax: Axes, box: np.ndarray, gid: str) -> None:
    from matplotlib.patches import Rectangle

    rect = Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, edgecolor="white",
                     linestyle=(0, (1, 2)), linewidth=1.4, zorder=3)
    rect.set_gid(gid)
    ax.add_patch(rect)


def _style_zoom(ax: Axes, display_only: bool) -> None:
    for spine in ax.spines.values():
        spine.set_edgecolor("#9a9a9a" if display_only else "black")
        spine.set_linestyle((0, (1, 2)) if display_only else (0, (3, 3)))
        spine.set_linewidth(1.6)


def _spacing_pt(ax: Axes, points: np.ndarray) -> float:
    """Median nearest-neighbour distance of ``points`` in display points (inf for < 2)."""
    if len(points) < 2:
        return math.inf
    x0, x1 = ax.get_xlim()
    y1, y0 = ax.get_ylim()
    bbox = ax.get_position()
    fig_w, fig_h = ax.figure.get_size_inches()
    scale = min(bbox.width * fig_w * 72 / abs(x1 - x0), bbox.height * fig_h * 72 / abs(y1 - y0))
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(np.median(d.min(1)) * scale)


def _in_view(ax: Axes, points: np.ndarray) -> np.ndarray:
    x0, x1 = ax.get_xlim()
    y1, y0 = ax.get_ylim()
    return (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)


def _marker_size(ax: Axes, reference: np.ndarray, zoom: bool) -> float:
    """Marker area (pt^2): a diameter of 0.7 times the keypoints' spacing, within 4.5 to 9 pt."""
    diameter = min(max(0.7 * _spacing_pt(ax, reference), 4.5), 9.0 if zoom else 7.5)
    return diameter**2


def _numbers(ax: Axes, points: np.ndarray, pair: _Pair, index: np.ndarray, zoom: bool, force: bool) -> bool:
    """Number the keypoints ``index`` at ``points`` when they are far enough apart or ``force``
    (the panel is the only one of its image in the row); True if drawn."""
    if not force and _spacing_pt(ax, points) < MIN_LABEL_SPACING_PT:
        return False
    from matplotlib import patheffects

    stroke = [patheffects.withStroke(linewidth=2.6, foreground="black")]
    for (x, y), i in zip(points, index):
        ax.annotate(str(i + 1), (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8 if zoom else 7,
                    fontweight="bold", color=pair.colours[i], path_effects=stroke, clip_on=True, zorder=6,
                    gid="number")
    return True


def _draw_source(ax: Axes, pair: _Pair, zoom: bool, only: bool) -> None:
    index = np.flatnonzero(pair.valid)
    pts = pair.src_kps[index]
    ax.scatter(pts[:, 0], pts[:, 1], s=_marker_size(ax, pts, zoom), c=[pair.colours[i] for i in index], marker="o",
               edgecolors="black", linewidths=1.0, zorder=5, gid="source-keypoints")
    _numbers(ax, pts, pair, index, zoom, zoom or only)


def _draw_target(ax: Axes, pair: _Pair, pred: np.ndarray, mark_pass1: bool, zoom: bool, only: bool) -> set[str]:
    """Predictions (and ground truth, errors, PCK circles, kept-pass-1 rings) on a target panel."""
    from matplotlib.patches import Circle

    needs = {"prediction"}
    index = np.flatnonzero(pair.valid)
    pts = pred[index]
    colours = [pair.colours[i] for i in index]
    correct = _correct(pts, None if pair.gt is None else pair.gt[index], pair.bound, pair.alpha)
    size = _marker_size(ax, pts if pair.gt is None else pair.gt[index], zoom)
    uncrowded = zoom or _spacing_pt(ax, pts) >= MIN_LABEL_SPACING_PT
    if correct is not None:
        gt = pair.gt[index]
        needs |= {"truth", "correct", "wrong"}
        for k in range(len(index)):
            ax.plot([pts[k, 0], gt[k, 0]], [pts[k, 1], gt[k, 1]], color=CORRECT if correct[k] else WRONG,
                    linewidth=1.4, zorder=4, gid="error-line",
                    path_effects=_under(2.8))
            if uncrowded:
                ax.add_patch(Circle(gt[k], pair.alpha * pair.bound, fill=False, edgecolor=colours[k],
                                    linestyle=(0, (1, 2)), linewidth=1.0, zorder=3, gid="pck-circle"))
                needs.add("circle")
        ax.scatter(gt[:, 0], gt[:, 1], s=size * 0.8, marker="D", facecolors="none",
                   edgecolors=colours, linewidths=1.6, zorder=4.5, gid="truth", path_effects=_under(3.2))
        for ok, marker in ((True, "o"), (False, "X")):
            sel = correct == ok
            if sel.any():
                ax.scatter(pts[sel, 0], pts[sel, 1], s=size * (1.0 if ok else 1.3), marker=marker,
                           c=[c for c, s in zip(colours, sel) if s], edgecolors=CORRECT if ok else WRONG,
                           linewidths=1.8, zorder=5, gid="prediction-correct" if ok else "prediction-wrong")
    else:
        ax.scatter(pts[:, 0], pts[:, 1], s=size, marker="o", c=colours, edgecolors="black",
                   linewidths=1.0, zorder=5, gid="prediction")
    if mark_pass1 and pair.from_pass2 is not None:
        kept = ~pair.from_pass2[index]
        if kept.any():
            needs.add("pass1")
            ax.scatter(pts[kept, 0], pts[kept, 1], s=size * 4.0, marker="s", facecolors="none",
                       edgecolors="white", linewidths=1.3, linestyle="--", zorder=5.5, gid="kept-pass-1",
                       path_effects=_under(2.6))
    _numbers(ax, pts, pair, index, zoom, zoom or only)
    return needs


def _under(width: float) -> list:
    from matplotlib import patheffects

    return [patheffects.Stroke(linewidth=width, foreground="black"), patheffects.Normal()]


def _join(fig: Figure, ax_src: Axes, ax_trg: Axes, pair: _Pair, pred: np.ndarray) -> None:
    """Lines from each source keypoint to its prediction, across the two panels."""
    from matplotlib.patches import ConnectionPatch

    index = np.flatnonzero(pair.valid)
    shown = _in_view(ax_src, pair.src_kps[index]) & _in_view(ax_trg, pred[index])
    for i in index[shown]:
        line = ConnectionPatch(xyA=tuple(pair.src_kps[i]), coordsA=ax_src.transData, xyB=tuple(pred[i]),
                               coordsB=ax_trg.transData, color=pair.colours[i], linewidth=0.8, alpha=0.7,
                               zorder=2)
        line.set_gid("pair-line")
        fig.add_artist(line)


def _score(pair: _Pair, pred: np.ndarray) -> str:
    if pair.gt is None:
        return ""
    ok = _correct(pred[pair.valid], pair.gt[pair.valid], pair.bound, pair.alpha)
    return f"{int(ok.sum())}/{len(ok)} correct"


def _panel_title(pair: _Pair, side: str, box: np.ndarray | None, zoom_kind: str, label: str, pred: np.ndarray,
                 is_kbc: bool) -> str:
    if box is not None:
        image = pair.src if side == "src" else pair.trg
        factor = max(image.shape[1] / (box[2] - box[0]), image.shape[0] / (box[3] - box[1]))
        name = "source" if side == "src" else "target"
        return f"{name}: zoom on {zoom_kind} (x{factor:.1f})"
    if side == "src":
        return f"source ({int(pair.valid.sum())} keypoints)"
    parts = [_score(pair, pred)]
    if is_kbc and pair.zoomed and pair.from_pass2 is not None:
        kept = int((~pair.from_pass2 & pair.valid).sum())
        if kept:
            parts.append(f"{kept} kept pass 1")
    detail = "; ".join(p for p in parts if p)
    return "target" + (f": {detail}" if detail else "")


def _figure_title(pair: _Pair, title: str | None) -> str:
    lines = [title] if title else []
    if pair.zoomed:
        why = "KBC zoomed: pass 2 ran on the windows"
        if pair.gt is not None:
            why += f" (PCK@{pair.alpha:g}: {_score(pair, pair.plain)} without KBC, {_score(pair, pair.kps)} with)"
    elif pair.reason in ("no box", "large enough"):
        why = f"KBC did not zoom ({pair.reason}): the result is pass 1's"
    elif pair.reason == "kbc off" or (pair.reason is None and pair.plain is None):
        why = "without KBC"
    else:
        why = "KBC did not change the windows: the result is pass 1's"
    lines.append(why)
    return "\n".join(lines)


def _legend(fig: Figure, pair: _Pair, needs: set[str]) -> None:
    from matplotlib.lines import Line2D

    grey = "#9a9a9a"
    items = [("source keypoint (number: its order, from 1)",
              Line2D([], [], marker="o", linestyle="", markerfacecolor=grey, markeredgecolor="black"))]
    if "correct" in needs:
        items += [
            (f"prediction, correct (PCK@{pair.alpha:g})", Line2D([], [], marker="o", linestyle="", markerfacecolor=grey,
                                                                 markeredgecolor=CORRECT, markeredgewidth=1.8)),
            ("prediction, wrong", Line2D([], [], marker="X", linestyle="", markersize=8, markerfacecolor=grey,
                                         markeredgecolor=WRONG, markeredgewidth=1.8)),
            ("ground truth", Line2D([], [], marker="D", linestyle="", markerfacecolor="none", markeredgecolor=grey,
                                    markeredgewidth=1.6)),
            ("error (prediction to truth)", Line2D([], [], color=WRONG, linewidth=1.4)),
        ]
        if "circle" in needs:
            items.append((f"PCK radius ({pair.alpha:g} L = {pair.alpha * pair.bound:.1f} px)",
                          Line2D([], [], marker="o", linestyle="", markersize=11, markerfacecolor="none",
                                 markeredgecolor=grey)))
    else:
        items.append(("prediction", Line2D([], [], marker="o", linestyle="", markerfacecolor=grey,
                                           markeredgecolor="black")))
    items.append(("same keypoint across the pair (one colour each)", Line2D([], [], color=grey, linewidth=0.9)))
    if "window" in needs:
        items.append(("KBC's window", Line2D([], [], color="black", linestyle=(0, (3, 3)), linewidth=1.2)))
    if "display" in needs:
        items.append(("region zoomed for display (KBC did not zoom it)", Line2D([], [], color="#9a9a9a",
                                                                            linestyle=(0, (1, 2)), linewidth=1.4)))
    if "pass1" in needs:
        items.append(("kept pass 1 (KBC's choice)", Line2D([], [], marker="s", linestyle="", markersize=11,
                                                           markerfacecolor="none", markeredgecolor="black")))
    labels, handles = zip(*items)
    columns = max(1, min(4, len(items), int(fig.get_figwidth() / 4.0)))
    fig.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=8, frameon=False)


def plot_result(
    src_img: Any, trg_img: Any, result: dict[str, Any], *, gt_kps: Any = None, pck_bound: float | None = None,
    alpha: float = 0.1, title: str | None = None, dpi: int = 100,
) -> Figure:
    """:func:`plot_match` of a :func:`sosc.inference.match_pair` result (``src_kps`` read from
    ``result["src_kps"]``, as ``sosc-match`` writes it, or given as ``result``'s key)."""
    kbc = result.get("kbc", {})
    enabled = kbc.get("enabled", True)
    return plot_match(
        src_img, trg_img, result["src_kps"], result["kps"],
        plain_kps=result.get("plain_kps") if enabled else None, gt_kps=gt_kps, pck_bound=pck_bound, alpha=alpha,
        src_window=kbc.get("src_window"), trg_window=kbc.get("trg_window"), from_pass2=kbc.get("from_pass2"),
        reason=kbc.get("reason") if enabled else "kbc off", title=title, dpi=dpi,
    )


def plot_output(
    src_img: Any, trg_img: Any, src_kps: Any, output: Any, index: int = 0, *, valid: Any = None, gt_kps: Any = None,
    pck_bound: float | None = None, alpha: float = 0.1, title: str | None = None, dpi: int = 100,
) -> Figure:
    """:func:`plot_match` of pair ``index`` of a :class:`~sosc.kbc.KBCOutput` (``src_kps``,
    ``valid``, ``gt_kps`` of that pair: ``(N, 2)``, ``(N,)``, ``(N, 2)`` original pixels)."""
    from sosc.kbc.plan import REASONS

    return plot_match(
        src_img, trg_img, src_kps, output.kps[index], plain_kps=output.plain_kps[index], gt_kps=gt_kps,
        valid=valid, pck_bound=pck_bound, alpha=alpha, src_window=output.src_window[index],
        trg_window=output.trg_window[index], from_pass2=output.from_pass2[index],
        reason=REASONS[int(output.reason[index])], title=title, dpi=dpi,
    )


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (or the format of ``path``'s suffix) and return the path; the
    folder is created. The figure is left open (``fig.clear()`` frees it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def figure_array(fig: Figure) -> np.ndarray:
    """The figure rendered as an ``(H, W, 3)`` uint8 array (for loggers and the app)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


__all__: Sequence[str] = ("plot_match", "plot_result", "plot_output", "save_figure", "figure_array",
                          "keypoint_colours", "as_image_array", "as_points")
