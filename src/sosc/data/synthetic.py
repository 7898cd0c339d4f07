"""Offline synthetic SOSC benchmark, written in the SPair-71k layout.

:func:`generate_synthetic` writes a small-object semantic-correspondence benchmark that
needs no network: every pixel comes from photographs bundled with installed packages
(scikit-image's ``skimage.data`` and scikit-learn's sample images). The tree is exactly
SPair-71k's, so the SPair-71k reader (:mod:`sosc.data.spair`) loads it unchanged::

    root/
      JPEGImages/<category>/<stem>.jpg
      ImageAnnotation/<category>/<stem>.json
      PairAnnotation/{trn,val,test}/<line>.json      # <line> contains the ':'
      Layout/large/{trn,val,test}.txt                # "<pair_id>-<src_stem>-<trg_stem>:<category>"
      .sosc-complete.json                            # generator version and parameters

Content
    A category (:data:`CATEGORIES`) is a shape template with a distinctive outline and
    named keypoints at fixed template positions (tips, corners, notches and a few interior
    points; :func:`keypoint_names`). An *instance* is the template with a per-instance
    aspect change and a smooth warp, filled with a texture cut from a photograph, with an
    optional thin dark or light rim. A *pair* shows one instance in two views, each on a
    different background (a region of another photograph), under a known geometric
    transform (3D rotation of the planar object seen through a pinhole camera -- in-plane
    rotation plus mild perspective --, scale, and a mild smooth per-view warp) and an
    independent photometric change (gamma, per-channel gain, contrast, brightness,
    sometimes blur and noise). Images are rendered by backward warping with the very
    maps that move the keypoints (the forward map is the numerical inverse of the backward
    map, solved by Newton's method to 1e-9 canonical units), so keypoints are exact. Image sides are 192..384 px, each side
    drawn independently.

Image stems are ``<category>_<split>_<index>_<view>`` (``view`` 0 = source, 1 = target);
pair ids are the pair's index within its split.

Coordinates
    Keypoints and boxes are continuous pixels: the image spans ``[0, W] x [0, H]`` and
    pixel ``(row i, col j)`` covers ``[j, j + 1) x [i, i + 1)`` (its centre is
    ``(j + 0.5, i + 0.5)``). Keypoints are written rounded to 2 decimals. Boxes
    ``[x1, y1, x2, y2]`` are ints: the floor/ceil of the object's full outline, clipped to
    the image (a truncated object's box is the visible part).

Difficulty flags (computed from what was generated)
    ``viewpoint_variation``: the angle of the relative 3D rotation between the views,
    0 below 17.5 deg, 1 below 37.5 deg, 2 above (sampled 0-15 / 20-35 / 40-60 deg).
    ``scale_variation``: ratio ``rho >= 1`` of the two relative object sizes
    (``max(outline w, h) / max(W, H)``), 0 below 1.5, 1 below 2.25, 2 above.
    ``truncation`` / ``occlusion``: 0 none, 1 source, 2 target, 3 both. An image is
    truncated when the object's outline leaves the frame; it is occluded when an occluding
    patch (a textured ellipse or rectangle cut from another photograph) covers at least one
    pixel of the object or one of its keypoints. Keypoints outside the frame or under the
    patch are not visible (``null`` in the image annotation) and a pair keeps only the
    keypoints visible in both images (at least 3: a draw with fewer is redrawn). ``mirror``
    and the poses are 0.

Object sizes
    The relative size (``max(outline w, h) / max(W, H)``) of the smaller view's object is
    drawn log-uniformly in ``[0.05, 0.85 / rho]`` and the other is ``rho`` times it (then
    shrunk if needed so that the whole outline fits the frame before any truncation). On
    the default set about 21 % of the boxes are under 0.1 of the image's longer side and
    14 % over 0.5.

Held-out photographs
    Training and validation pairs use :data:`TRAIN_TEXTURE_PHOTOS` for the object textures
    and :data:`TRAIN_BACKGROUND_PHOTOS` for backgrounds (occluders come from both lists).
    Test pairs use only :data:`TEST_TEXTURE_PHOTOS` for textures and
    :data:`TEST_BACKGROUND_PHOTOS` for backgrounds (occluders from both), photographs that
    never appear in ``trn`` or ``val``. Each image annotation names its photographs in the
    extra fields ``source_photo`` (texture), ``background_photo`` and ``occluder_photo``
    (``null`` when there is no occluder).

Determinism and safety
    Each pair is drawn from its own generator seeded by ``(seed, split, index, attempt)``,
    so the same parameters give byte-identical files whatever ``num_workers`` is. The set
    is written into a sibling ``<root>.partial-<random>`` folder that is renamed to
    ``root`` only when complete; a completion marker ``root/.sosc-complete.json`` records
    the generator version and the parameters. Leftover ``<root>.partial-*`` folders of an
    interrupted run are removed. Two generations into the same root at the same time are
    not supported (Lightning's ``prepare_data`` runs on one process).

>>> root = generate_synthetic("/tmp/sosc-synthetic", n_train=8, n_val=0, n_test=0,
...                           num_workers=1, progress=False)  # doctest: +SKIP
>>> is_complete(root)  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from io import BytesIO
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image
from scipy import ndimage

from sosc.errors import ConfigError, DatasetError

#: Bumped whenever the generated content changes for the same parameters.
GENERATOR_VERSION = "1"
#: The completion marker, written last (inside the temporary folder, before the rename).
MARKER_NAME = ".sosc-complete.json"
JPEG_QUALITY = 92
#: SPair-71k's split names, in the order they are generated.
SPLITS = ("trn", "val", "test")
#: The object categories, each named after its shape.
CATEGORIES = ("arrow", "bolt", "crescent", "cross", "fish", "heart", "house", "star")

#: Object textures of ``trn`` and ``val`` pairs.
TRAIN_TEXTURE_PHOTOS = (
    "astronaut", "chelsea", "china", "coffee", "motorcycle_left", "motorcycle_right", "retina",
)
#: Backgrounds of ``trn`` and ``val`` pairs.
TRAIN_BACKGROUND_PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "china", "coffee", "coins", "grass",
    "hubble_deep_field", "moon", "motorcycle_left", "motorcycle_right",
)
#: Object textures of ``test`` pairs only (never used in ``trn``/``val``).
TEST_TEXTURE_PHOTOS = ("flower", "immunohistochemistry")
#: Backgrounds of ``test`` pairs only (never used in ``trn``/``val``).
TEST_BACKGROUND_PHOTOS = ("gravel", "rocket")

# name -> (package, loader key, item of a tuple result or None); all ship with the package.
_PHOTO_SOURCES = MappingProxyType({
    "astronaut": ("skimage", "astronaut", None),
    "brick": ("skimage", "brick", None),
    "camera": ("skimage", "camera", None),
    "chelsea": ("skimage", "chelsea", None),
    "coffee": ("skimage", "coffee", None),
    "coins": ("skimage", "coins", None),
    "grass": ("skimage", "grass", None),
    "gravel": ("skimage", "gravel", None),
    "hubble_deep_field": ("skimage", "hubble_deep_field", None),
    "immunohistochemistry": ("skimage", "immunohistochemistry", None),
    "moon": ("skimage", "moon", None),
    "motorcycle_left": ("skimage", "stereo_motorcycle", 0),
    "motorcycle_right": ("skimage", "stereo_motorcycle", 1),
    "retina": ("skimage", "retina", None),
    "rocket": ("skimage", "rocket", None),
    "china": ("sklearn", "china.jpg", None),
    "flower": ("sklearn", "flower.jpg", None),
})

_SPLIT_CODES = MappingProxyType({"trn": 0, "val": 1, "test": 2})
_MAX_PHOTO_SIDE = 1024  # photos are downscaled to this longer side when loaded
_IMAGE_SIDES = (192, 384)  # inclusive range of each image side, px
_REL_SIZE = (0.05, 0.85)  # relative object size range (of the image's longer side)
_VIEWPOINT_CLASSES = ((0.0, 15.0), (20.0, 35.0), (40.0, 60.0))  # degrees
_VIEWPOINT_PROBS = (0.4, 0.35, 0.25)
_VIEWPOINT_THRESHOLDS = (17.5, 37.5)
_SCALE_CLASSES = ((1.0, 1.4), (1.6, 2.1), (2.4, 4.0))  # size ratio rho
_SCALE_PROBS = (0.5, 0.3, 0.2)
_SCALE_THRESHOLDS = (1.5, 2.25)
_MAX_TILT_DEG = 55.0  # out-of-plane tilt of any view
_CAMERA_DISTANCE = 4.0  # canonical units; smaller = stronger perspective
_P_TRUNCATE = 0.2
_P_OCCLUDE = 0.2
_MIN_COMMON_KPS = 3
_MAX_ATTEMPTS = 50
_SDF_HALF = 1.25  # the signed-distance raster spans [-_SDF_HALF, _SDF_HALF]^2 canonical units
_SDF_RES = 512


# ----------------------------------------------------------------------------------------
# Parameters, marker, public entry points
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """The parameters that determine the generated content (not how it is computed).

    Attributes:
        seed: non-negative base seed.
        n_train, n_val, n_test: number of pairs in ``trn``, ``val`` and ``test``.
    """

    seed: int = 0
    n_train: int = 3000
    n_val: int = 300
    n_test: int = 300

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"synthetic benchmark: {name} must be a non-negative int, got {value!r}")

    def counts(self) -> dict[str, int]:
        """Number of pairs per SPair split name (``trn``, ``val``, ``test``)."""
        return {"trn": self.n_train, "val": self.n_val, "test": self.n_test}

    def marker(self) -> dict:
        """The content of the completion marker (what identifies the generated set)."""
        return {"generator": "sosc.data.synthetic", "version": GENERATOR_VERSION, **asdict(self)}


def _read_marker(root: Path) -> dict | None:
    path = root / MARKER_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(
            f"completion marker {path} cannot be read ({err}): delete the folder {root} "
            "(rm -r) and generate the synthetic set again"
        ) from err
    if not isinstance(data, dict):
        raise DatasetError(f"completion marker {path} is not a JSON object: delete {root} and generate again")
    return data


def is_complete(root: str | Path) -> bool:
    """Whether ``root`` holds a completely written synthetic set (any parameters)."""
    try:
        marker = _read_marker(Path(root))
    except DatasetError:
        return False
    return marker is not None and marker.get("generator") == "sosc.data.synthetic"


def keypoint_names(category: str) -> tuple[str, ...]:
    """The names of a category's keypoints; keypoint id ``k`` (``str(k)`` in the JSON) is
    ``keypoint_names(category)[k]``.

    >>> keypoint_names("arrow")[:3]
    ('tip', 'barb_upper', 'neck_upper')
    """
    return _template(category).names


def _check_existing(root: Path, spec: SyntheticSpec) -> bool:
    """True when ``root`` already holds this set; False when it is an empty folder.

    Raises DatasetError when it holds something else."""
    if not root.is_dir():
        raise DatasetError(f"{root} exists and is not a folder: choose another root for the synthetic set")
    marker = _read_marker(root)
    want = spec.marker()
    if marker is not None:
        keys = sorted(set(marker) | set(want))
        diffs = [f"{k}: {marker.get(k)!r} on disk, {want.get(k)!r} asked" for k in keys if marker.get(k) != want.get(k)]
        if not diffs:
            return True
        raise DatasetError(
            f"{root} holds a synthetic set made with other parameters ({'; '.join(diffs)}): "
            f"delete it (rm -r {root}) to generate the new one there, or choose another root"
        )
    if any(root.iterdir()):
        raise DatasetError(
            f"{root} exists, is not empty and has no {MARKER_NAME}: it is not a synthetic set "
            "written by sosc (or one whose writing never finished), and it will not be "
            "overwritten; choose an empty or new folder as root, or delete this one if it is yours to delete"
        )
    return False


def generate_synthetic(
    root: str | Path,
    *,
    seed: int = 0,
    n_train: int = 3000,
    n_val: int = 300,
    n_test: int = 300,
    num_workers: int = 2,
    progress: bool = True,
) -> Path:
    """Write the synthetic SOSC benchmark in the SPair-71k layout under ``root``.

    Returns at once when ``root`` already holds the set made with the same parameters.
    ``num_workers`` and ``progress`` do not change the output. See the module docstring
    for the content, the conventions and the held-out photographs.

    Args:
        root: the folder to create (its parent is created if needed).
        seed: non-negative base seed.
        n_train, n_val, n_test: pairs in ``trn``, ``val``, ``test``.
        num_workers: worker processes (``multiprocessing``: fork on Linux, spawn elsewhere);
            0 or 1 runs in this process.
        progress: show a tqdm progress bar.

    Returns:
        ``root`` as an absolute path.

    Raises:
        DatasetError: ``root`` holds a set made with other parameters, or is a non-empty
            folder without the completion marker (never overwritten).
        ConfigError: a parameter is invalid.
    """
    spec = SyntheticSpec(seed=seed, n_train=n_train, n_val=n_val, n_test=n_test)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"synthetic benchmark: num_workers must be a non-negative int, got {num_workers!r}")
    root = Path(root).expanduser().absolute()
    if root.parent.is_dir():  # leftovers of an interrupted run
        for leftover in sorted(root.parent.iterdir()):
            if leftover.name.startswith(f"{root.name}.partial-") and leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
    if root.exists() and _check_existing(root, spec):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.partial-{secrets.token_hex(6)}")
    try:
        tmp.mkdir()
        _write_all(tmp, spec, num_workers, progress)
        (tmp / MARKER_NAME).write_text(json.dumps(spec.marker(), indent=1) + "\n")
        if root.exists():  # an empty folder (checked above)
            root.rmdir()
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


@dataclass(frozen=True)
class _Chunk:
    """Pairs ``start <= index < stop`` of one split, written under ``out_dir``."""

    seed: int
    split: str
    start: int
    stop: int
    out_dir: str


def _run_chunk(chunk: _Chunk) -> tuple[str, int, list[str]]:
    """Write the pairs of a chunk; return ``(split, start, layout lines)``."""
    out = Path(chunk.out_dir)
    lines = [_write_pair(out, chunk.seed, chunk.split, i) for i in range(chunk.start, chunk.stop)]
    return chunk.split, chunk.start, lines


def _start_method() -> str:
    """``fork`` on Linux (workers inherit the imported modules: importing ``sosc`` again in
    every worker would cost seconds), ``spawn`` elsewhere; the workers need no inherited
    state, so both give the same files."""
    import multiprocessing
    import sys

    return "fork" if sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _write_all(out: Path, spec: SyntheticSpec, num_workers: int, progress: bool) -> None:
    for split in SPLITS:
        (out / "PairAnnotation" / split).mkdir(parents=True)
    for category in CATEGORIES:
        (out / "JPEGImages" / category).mkdir(parents=True)
        (out / "ImageAnnotation" / category).mkdir(parents=True)
    (out / "Layout" / "large").mkdir(parents=True)
    total = sum(spec.counts().values())
    size = max(1, min(50, math.ceil(total / (max(num_workers, 1) * 8))))
    chunks = [
        _Chunk(spec.seed, split, start, min(start + size, n), str(out))
        for split, n in spec.counts().items()
        for start in range(0, n, size)
    ]
    from tqdm.auto import tqdm

    results: dict[tuple[str, int], list[str]] = {}
    with tqdm(total=total, disable=not progress, unit="pair", desc="synthetic SOSC") as bar:
        if num_workers <= 1 or len(chunks) <= 1:
            for chunk in chunks:
                split, start, lines = _run_chunk(chunk)
                results[split, start] = lines
                bar.update(len(lines))
        else:
            import multiprocessing

            with multiprocessing.get_context(_start_method()).Pool(num_workers) as pool:
                for split, start, lines in pool.imap_unordered(_run_chunk, chunks):
                    results[split, start] = lines
                    bar.update(len(lines))
    for split in SPLITS:
        lines = [line for (s, _), part in sorted(results.items()) if s == split for line in part]
        (out / "Layout" / "large" / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines))


# ----------------------------------------------------------------------------------------
# Photographs
# ----------------------------------------------------------------------------------------


@cache
def _photo_pyramid(name: str) -> tuple[np.ndarray, ...]:
    """A bundled photograph as read-only uint8 ``(H, W, 3)`` arrays, level ``l`` being
    level 0 box-averaged ``2**l`` times (level-``l`` continuous coordinate = level-0 / ``2**l``)."""
    if name not in _PHOTO_SOURCES:
        raise DatasetError(f"unknown photograph {name!r}; known: {sorted(_PHOTO_SOURCES)}")
    package, key, item = _PHOTO_SOURCES[name]
    try:
        if package == "skimage":
            import skimage.data

            arr = getattr(skimage.data, key)()
        else:
            from sklearn.datasets import load_sample_image

            arr = load_sample_image(key)
    except Exception as err:
        pip_name = "scikit-image" if package == "skimage" else "scikit-learn"
        raise DatasetError(
            f"the photograph {name!r} ({package} {key}) that the synthetic benchmark is made from "
            f"cannot be loaded ({type(err).__name__}: {err}); it ships with {pip_name}: reinstall it "
            f"(pip install --force-reinstall {pip_name})"
        ) from err
    if item is not None:
        arr = arr[item]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    image = Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8))
    scale = _MAX_PHOTO_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BOX)
    levels = []
    while True:
        level = np.asarray(image, dtype=np.uint8).copy()
        level.setflags(write=False)
        levels.append(level)
        if min(image.size) < 64:
            break
        image = image.crop((0, 0, image.width // 2 * 2, image.height // 2 * 2)).reduce(2)
    return tuple(levels)


@cache
def _photo_image(name: str, level: int) -> Image.Image:
    """A level of :func:`_photo_pyramid` as a PIL image (never modified)."""
    return Image.fromarray(_photo_pyramid(name)[level])


def _resized_region(name: str, box: tuple[float, float, float, float], size_wh: tuple[int, int]) -> np.ndarray:
    """The region ``box`` (level-0 px ``x1, y1, x2, y2``) of a photo resized to ``size_wh``:
    uint8 ``(H, W, 3)``, read from the coarsest pyramid level still at least as fine as
    the output."""
    pyramid = _photo_pyramid(name)
    ratio = min((box[2] - box[0]) / size_wh[0], (box[3] - box[1]) / size_wh[1])
    level = _level_for(pyramid, ratio)
    f = 2.0**level
    image = _photo_image(name, level)
    x1, y1, x2, y2 = box[0] / f, box[1] / f, min(box[2] / f, image.width), min(box[3] / f, image.height)
    return np.asarray(image.resize(size_wh, Image.Resampling.BILINEAR, box=(x1, y1, x2, y2)))


@dataclass(frozen=True)
class _Pools:
    textures: tuple[str, ...]
    backgrounds: tuple[str, ...]
    occluders: tuple[str, ...]


def _photo_pools(split: str) -> _Pools:
    """The photographs a split may use (``test`` only the held-out ones)."""
    if split == "test":
        tex, bg = TEST_TEXTURE_PHOTOS, TEST_BACKGROUND_PHOTOS
    else:
        tex, bg = TRAIN_TEXTURE_PHOTOS, TRAIN_BACKGROUND_PHOTOS
    return _Pools(tex, bg, tuple(sorted(set(tex) | set(bg))))


def _sample_bilinear(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img`` (``(H, W)`` or ``(H, W, C)``) at continuous pixel
    coordinates ``xy`` (``(..., 2)``, ``(x, y)``, pixel centres at ``+0.5``), reflected at
    the borders; float32 ``(...)`` or ``(..., C)``."""
    coords = [xy[..., 1] - 0.5, xy[..., 0] - 0.5]
    if img.ndim == 2:
        return ndimage.map_coordinates(img, coords, order=1, mode="reflect", output=np.float32)
    return np.stack(
        [ndimage.map_coordinates(img[..., c], coords, order=1, mode="reflect", output=np.float32) for c in range(img.shape[2])],
        axis=-1,
    )


# ----------------------------------------------------------------------------------------
# Templates: outlines, keypoints, signed distance
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Template:
    """A category's shape in canonical coordinates (x right, y down, within about ``[-1, 1]^2``).

    Attributes:
        outline: ``(M, 2)`` closed polygon, consecutive points at most 0.04 apart.
        kps: ``(K, 2)`` keypoint positions, ``K`` in 6..20.
        names: ``K`` keypoint names.
    """

    outline: np.ndarray
    kps: np.ndarray
    names: tuple[str, ...]


def _densify(vertices: np.ndarray, max_step: float = 0.04) -> np.ndarray:
    """A closed polygon ``(V, 2)`` with points inserted so that edges are ``<= max_step``."""
    out = []
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        n = max(1, math.ceil(float(np.linalg.norm(b - a)) / max_step))
        t = np.arange(n)[:, None] / n
        out.append(a + t * (b - a))
    return np.concatenate(out)


_Named = list[tuple[str, tuple[float, float]]]


def _polygon(named: _Named, interior: _Named) -> tuple[np.ndarray, _Named]:
    """A polygon whose vertices are all keypoints, plus interior keypoints."""
    verts = np.array([p for _, p in named], dtype=np.float64)
    return _densify(verts), named + interior


def _arrow() -> tuple[np.ndarray, _Named]:
    return _polygon(
        [("tip", (1.0, 0.0)), ("barb_upper", (0.25, -0.6)), ("neck_upper", (0.25, -0.2)),
         ("tail_upper", (-1.0, -0.2)), ("tail_notch", (-0.78, 0.0)), ("tail_lower", (-1.0, 0.2)),
         ("neck_lower", (0.25, 0.2)), ("barb_lower", (0.25, 0.6))],
        [("head_centre", (0.5, 0.0)), ("shaft_centre", (-0.3, 0.0))],
    )


def _bolt() -> tuple[np.ndarray, _Named]:
    return _polygon(
        [("top_left", (-0.25, -1.0)), ("top_right", (0.45, -1.0)), ("inner_right", (0.1, -0.2)),
         ("step_right", (0.55, -0.2)), ("bottom_tip", (-0.35, 1.0)), ("inner_left", (-0.05, 0.15)),
         ("step_left", (-0.5, 0.15))],
        [("upper_centre", (0.05, -0.55)), ("lower_centre", (0.0, 0.3))],
    )


def _cross() -> tuple[np.ndarray, _Named]:
    return _polygon(
        [("top_left", (-0.2, -1.0)), ("top_right", (0.2, -1.0)), ("armpit_upper_right", (0.2, -0.55)),
         ("right_top", (0.7, -0.55)), ("right_bottom", (0.7, -0.15)), ("armpit_lower_right", (0.2, -0.15)),
         ("bottom_right", (0.2, 1.0)), ("bottom_left", (-0.2, 1.0)), ("armpit_lower_left", (-0.2, -0.15)),
         ("left_bottom", (-0.7, -0.15)), ("left_top", (-0.7, -0.55)), ("armpit_upper_left", (-0.2, -0.55))],
        [("crossing", (0.0, -0.35)), ("stem_centre", (0.0, 0.45))],
    )


def _house() -> tuple[np.ndarray, _Named]:
    def roof(x: float) -> float:  # the right roof slope, from the apex (0, -1) to the eave (1, -0.1)
        return -1.0 + 0.9 * x

    verts = [
        ("apex", (0.0, -1.0)), ("chimney_base_left", (0.45, roof(0.45))), ("chimney_top_left", (0.45, -0.98)),
        ("chimney_top_right", (0.65, -0.98)), ("chimney_base_right", (0.65, roof(0.65))), ("eave_right", (1.0, -0.1)),
        ("wall_top_right", (0.8, -0.1)), ("base_right", (0.8, 1.0)), ("door_bottom_right", (0.2, 1.0)),
        ("door_top_right", (0.2, 0.45)), ("door_top_left", (-0.2, 0.45)), ("door_bottom_left", (-0.2, 1.0)),
        ("base_left", (-0.8, 1.0)), ("wall_top_left", (-0.8, -0.1)), ("eave_left", (-1.0, -0.1)),
    ]
    keep = {"apex", "chimney_top_left", "chimney_top_right", "eave_right", "base_right", "door_top_right",
            "door_top_left", "base_left", "eave_left", "wall_top_left", "wall_top_right"}
    outline, _ = _polygon(verts, [])
    kps = [v for v in verts if v[0] in keep] + [("wall_centre", (0.0, 0.15)), ("attic", (0.0, -0.5))]
    return outline, kps


def _star() -> tuple[np.ndarray, _Named]:
    names = ["tip_top", "notch_upper_right", "tip_right", "notch_lower_right", "tip_lower_right",
             "notch_bottom", "tip_lower_left", "notch_lower_left", "tip_left", "notch_upper_left"]
    named = []
    for k, name in enumerate(names):
        angle = -math.pi / 2 + k * math.pi / 5
        radius = 1.0 if k % 2 == 0 else 0.42
        named.append((name, (radius * math.cos(angle), radius * math.sin(angle))))
    return _polygon(named, [("centre", (0.0, 0.0)), ("top_ray_middle", (0.0, -0.6))])


def _heart() -> tuple[np.ndarray, _Named]:
    def point(t: float | np.ndarray) -> np.ndarray:
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x / 16, (y - 2.5) / 16], axis=-1)

    t = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    outline = point(t)
    grid = np.linspace(0, np.pi / 2, 2001)
    t_lobe = float(grid[np.argmin(point(grid)[:, 1])])  # the highest point of the right lobe
    at = {
        "notch": 0.0, "lobe_top_right": t_lobe, "side_right": np.pi / 2, "flank_right": 3 * np.pi / 4,
        "bottom_tip": np.pi, "flank_left": 5 * np.pi / 4, "side_left": 3 * np.pi / 2,
        "lobe_top_left": 2 * np.pi - t_lobe,
    }
    named = [(name, tuple(float(v) for v in point(tt))) for name, tt in at.items()]
    lobe = point(t_lobe)
    interior = [("centre", (0.0, 0.05)), ("lobe_centre_right", (float(lobe[0]), float(lobe[1]) + 0.3)),
                ("lobe_centre_left", (-float(lobe[0]), float(lobe[1]) + 0.3))]
    return outline, named + interior


def _crescent() -> tuple[np.ndarray, _Named]:
    big_r, small_r, centre = 1.0, 0.8, np.array([0.42, -0.1])
    d = float(np.linalg.norm(centre))
    a = (big_r**2 - small_r**2 + d**2) / (2 * d)
    h = math.sqrt(big_r**2 - a**2)
    axis = centre / d
    perp = np.array([-axis[1], axis[0]])
    horns = sorted([a * axis + h * perp, a * axis - h * perp], key=lambda p: p[1])  # upper first (y down)
    upper, lower = horns
    outer_from = math.atan2(upper[1], upper[0])
    outer_to = math.atan2(lower[1], lower[0]) - 2 * math.pi  # through the left (angle pi)
    inner_from = math.atan2(lower[1] - centre[1], lower[0] - centre[0])
    inner_to = math.atan2(upper[1] - centre[1], upper[0] - centre[0]) + 2 * math.pi
    ta = np.linspace(outer_from, outer_to, 120, endpoint=False)
    tb = np.linspace(inner_from, inner_to, 100, endpoint=False)
    outline = np.concatenate([
        big_r * np.stack([np.cos(ta), np.sin(ta)], -1),
        centre + small_r * np.stack([np.cos(tb), np.sin(tb)], -1),
    ])

    def band_middle(angle: float) -> tuple[float, float]:
        e = np.array([math.cos(angle), math.sin(angle)])
        ec = float(e @ centre)
        t_inner = ec + math.sqrt(ec**2 - d**2 + small_r**2)
        return tuple(float(v) for v in 0.5 * (t_inner + big_r) * e)

    def on_outer(angle: float) -> tuple[float, float]:
        return (big_r * math.cos(angle), big_r * math.sin(angle))

    named = [
        ("horn_upper", tuple(float(v) for v in upper)), ("horn_lower", tuple(float(v) for v in lower)),
        ("outer_left", on_outer(math.pi)), ("outer_upper_left", on_outer(-3 * math.pi / 4)),
        ("outer_lower_left", on_outer(3 * math.pi / 4)),
        ("inner_deepest", (float(centre[0] - small_r), float(centre[1]))),
        ("band_left", band_middle(math.pi)), ("band_upper_left", band_middle(-3 * math.pi / 4)),
        ("band_lower_left", band_middle(3 * math.pi / 4)),
    ]
    return outline, named


def _fish() -> tuple[np.ndarray, _Named]:
    cx, rx, ry = -0.2, 0.8, 0.5

    def body(t: float) -> tuple[float, float]:
        return (cx + rx * math.cos(t), ry * math.sin(t))

    def arc(t0: float, t1: float, n: int) -> list[tuple[float, float]]:
        return [body(t) for t in np.linspace(t0, t1, n, endpoint=False)]

    dorsal_a, dorsal_b, belly_a, belly_b = 4.25, 5.0, 2.0, 2.45
    tail_t = 0.55
    named = {
        "nose": body(math.pi), "dorsal_front": body(dorsal_a), "dorsal_tip": (0.05, -0.88),
        "dorsal_back": body(dorsal_b), "tail_joint_upper": body(2 * math.pi - tail_t),
        "tail_tip_upper": (1.0, -0.6), "tail_notch": (0.78, 0.0), "tail_tip_lower": (1.0, 0.6),
        "tail_joint_lower": body(tail_t), "belly_fin_back": body(belly_a), "belly_fin_tip": (-0.5, 0.72),
        "belly_fin_front": body(belly_b),
    }
    pts = (
        arc(math.pi, dorsal_a, 12) + [named["dorsal_front"], named["dorsal_tip"]]
        + arc(dorsal_b, 2 * math.pi - tail_t, 10)
        + [named["tail_joint_upper"], named["tail_tip_upper"], named["tail_notch"], named["tail_tip_lower"]]
        + arc(tail_t, belly_a, 14) + [named["belly_fin_back"], named["belly_fin_tip"]]
        + arc(belly_b, math.pi, 8)
    )
    # consecutive duplicates (a named point that is also an arc sample) would make zero-length edges
    uniq = [p for i, p in enumerate(pts) if i == 0 or np.hypot(p[0] - pts[i - 1][0], p[1] - pts[i - 1][1]) > 1e-9]
    outline = _densify(np.array(uniq, dtype=np.float64))
    keep = ["nose", "dorsal_tip", "dorsal_front", "dorsal_back", "tail_tip_upper", "tail_notch",
            "tail_tip_lower", "tail_joint_upper", "tail_joint_lower", "belly_fin_tip"]
    kps = [(k, tuple(float(v) for v in named[k])) for k in keep]
    kps += [("eye", (-0.68, -0.15)), ("gill", (-0.42, 0.05)), ("body_centre", (0.05, 0.0))]
    return outline, kps


_TEMPLATE_BUILDERS: MappingProxyType[str, Callable[[], tuple[np.ndarray, _Named]]] = MappingProxyType({
    "arrow": _arrow, "bolt": _bolt, "crescent": _crescent, "cross": _cross,
    "fish": _fish, "heart": _heart, "house": _house, "star": _star,
})


@cache
def _template(category: str) -> _Template:
    if category not in _TEMPLATE_BUILDERS:
        raise ConfigError(f"unknown synthetic category {category!r}; the categories are {list(CATEGORIES)}")
    outline, named = _TEMPLATE_BUILDERS[category]()
    outline = np.ascontiguousarray(outline, dtype=np.float64)
    kps = np.array([p for _, p in named], dtype=np.float64)
    outline.setflags(write=False)
    kps.setflags(write=False)
    return _Template(outline=outline, kps=kps, names=tuple(n for n, _ in named))


@cache
def _template_sdf(category: str) -> np.ndarray:
    """Signed distance to the template outline, canonical units, negative inside:
    float32 ``(_SDF_RES, _SDF_RES)``; pixel ``(i, j)`` centred at canonical
    ``(-_SDF_HALF + (j + 0.5) * step, -_SDF_HALF + (i + 0.5) * step)``."""
    from skimage.draw import polygon2mask

    step = 2 * _SDF_HALF / _SDF_RES
    idx = (_template(category).outline + _SDF_HALF) / step - 0.5  # (x, y) -> (col, row)
    mask = polygon2mask((_SDF_RES, _SDF_RES), idx[:, ::-1])
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    sdf = (np.where(mask, 0.5 - inside, outside - 0.5) * step).astype(np.float32)
    sdf.setflags(write=False)
    return sdf


def _sample_sdf(sdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The template SDF at canonical points ``u`` ``(..., 2)``, canonical units."""
    step = 2 * _SDF_HALF / _SDF_RES
    coords = [(u[..., 1] + _SDF_HALF) / step - 0.5, (u[..., 0] + _SDF_HALF) / step - 0.5]
    return ndimage.map_coordinates(sdf, coords, order=1, mode="nearest", output=np.float32)


# ----------------------------------------------------------------------------------------
# Geometry: smooth fields, the view warp and its inverse
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _SmoothField:
    """Displacement ``d(q) = sum_k amp_k * sin(freq_k . q + phase_k)``.

    Attributes:
        amp: ``(K, 2)`` canonical units. freq: ``(K, 2)`` radians per unit. phase: ``(K,)``.
        The Lipschitz constant ``sum_k |amp_k| |freq_k|`` is kept below 0.3 so that
        ``q + d(q)`` is a diffeomorphism.
    """

    amp: np.ndarray
    freq: np.ndarray
    phase: np.ndarray

    def __call__(self, q: np.ndarray) -> np.ndarray:
        """``(..., 2)`` -> ``(..., 2)`` displacement, in ``q``'s dtype."""
        dt = q.dtype
        out = np.zeros_like(q)
        for amp, freq, phase in zip(self.amp.astype(dt), self.freq.astype(dt), self.phase.astype(dt), strict=True):
            s = np.sin(q[..., 0] * freq[0] + q[..., 1] * freq[1] + phase)
            out[..., 0] += amp[0] * s
            out[..., 1] += amp[1] * s
        return out


def _sample_field(rng: np.random.Generator, lipschitz: float, max_amp: float, terms: int = 3) -> _SmoothField:
    freq_norm = rng.uniform(0.8, 2.5, terms)
    freq_dir = rng.uniform(-np.pi, np.pi, terms)
    amp_norm = np.minimum(rng.uniform(0.3, 1.0, terms) * lipschitz / (terms * freq_norm), max_amp)
    amp_dir = rng.uniform(-np.pi, np.pi, terms)
    return _SmoothField(
        amp=amp_norm[:, None] * np.stack([np.cos(amp_dir), np.sin(amp_dir)], -1),
        freq=freq_norm[:, None] * np.stack([np.cos(freq_dir), np.sin(freq_dir)], -1),
        phase=rng.uniform(-np.pi, np.pi, terms),
    )


def _apply_h(h: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Homography ``h`` ``(3, 3)`` applied to points ``(..., 2)``, in ``p``'s dtype."""
    m = h.astype(p.dtype)
    x, y = p[..., 0], p[..., 1]
    w = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    return np.stack([(m[0, 0] * x + m[0, 1] * y + m[0, 2]) / w, (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / w], -1)


@dataclass(frozen=True, eq=False)
class _ViewWarp:
    """The backward map ``u = B(p)`` from image pixels ``p`` to canonical template
    coordinates ``u``, and its inverse (the forward map, for points):

    ``q = H^-1 p`` (instance plane), ``q' = q + d_view(q)``, ``u = diag(1/a, a) (q' + d_inst(q'))``.

    Attributes:
        h: ``(3, 3)`` homography, instance plane -> image pixels.
        aspect: ``a``, the instance's aspect change (shared by both views).
        inst_field: the instance's smooth warp (shared). view_field: this view's.
    """

    h: np.ndarray
    aspect: float
    inst_field: _SmoothField
    view_field: _SmoothField

    def backward(self, p: np.ndarray) -> np.ndarray:
        """Image pixels ``(..., 2)`` -> canonical ``(..., 2)``, in ``p``'s dtype."""
        q = _apply_h(np.linalg.inv(self.h), p)
        q = q + self.view_field(q)
        u = q + self.inst_field(q)
        return u * np.array([1.0 / self.aspect, self.aspect], dtype=p.dtype)

    def value_and_jacobian(self, p: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`backward` at ``p`` ``(M, 2)`` and its derivative ``(M, 2, 2)``
        (``[m, i, j] = du_i / dp_j``, central differences with step ``eps`` pixels), from
        one stacked evaluation."""
        steps = np.array([[0.0, 0.0], [eps, 0.0], [-eps, 0.0], [0.0, eps], [0.0, -eps]])
        u = self.backward(p[None] + steps[:, None])  # (5, M, 2)
        jx = (u[1] - u[2]) / (2 * eps)
        jy = (u[3] - u[4]) / (2 * eps)
        return u[0], np.stack([jx, jy], axis=-1)

    def forward(self, u: np.ndarray) -> np.ndarray:
        """Canonical ``(M, 2)`` -> image pixels ``(M, 2)`` float64: solves ``B(p) = u`` by
        Newton's method; ``|B(p) - u| < 1e-9`` canonical units on return."""
        u = np.asarray(u, dtype=np.float64)
        p = _apply_h(self.h, u * np.array([self.aspect, 1.0 / self.aspect]))
        eps = 1e-5 * (1.0 + float(np.abs(p).max(initial=0.0)))
        for _ in range(30):
            value, jac = self.value_and_jacobian(p, eps)
            residual = value - u
            if np.abs(residual).max(initial=0.0) < 1e-11:
                break
            p = p - np.linalg.solve(jac, residual[..., None])[..., 0]
        err = float(np.abs(self.backward(p) - u).max(initial=0.0))
        if not err < 1e-9:
            raise RuntimeError(f"synthetic benchmark: the view warp could not be inverted (residual {err:.3g})")
        return p

    def moved(self, scale: float, centre: np.ndarray) -> _ViewWarp:
        """The same warp followed by ``p -> scale * p + centre`` in the image."""
        a = np.array([[scale, 0.0, centre[0]], [0.0, scale, centre[1]], [0.0, 0.0, 1.0]])
        return _ViewWarp(a @ self.h, self.aspect, self.inst_field, self.view_field)


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """``(3, 3)`` rotation by ``angle`` radians about ``axis`` (Rodrigues)."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _rotation_angle(r: np.ndarray) -> float:
    """Angle of the rotation ``r`` in degrees."""
    return math.degrees(math.acos(float(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def _plane_homography(r: np.ndarray) -> np.ndarray:
    """The plane ``z = 0`` rotated by ``r`` and seen by a pinhole camera at distance
    ``_CAMERA_DISTANCE`` (focal length equal to it): ``(3, 3)`` plane -> image (units of q)."""
    return np.array([
        [r[0, 0], r[0, 1], 0.0],
        [r[1, 0], r[1, 1], 0.0],
        [r[2, 0] / _CAMERA_DISTANCE, r[2, 1] / _CAMERA_DISTANCE, 1.0],
    ])


def _sample_rotations(rng: np.random.Generator, klass: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Source and target 3D rotations whose relative angle lies in viewpoint class ``klass``;
    None when no draw kept both views within the tilt limit."""
    theta = math.radians(rng.uniform(-30, 30))
    tilt_axis = rng.uniform(-np.pi, np.pi)
    r_src = _axis_angle(np.array([0.0, 0.0, 1.0]), theta) @ _axis_angle(
        np.array([math.cos(tilt_axis), math.sin(tilt_axis), 0.0]), math.radians(rng.uniform(0, 30))
    )
    lo, hi = _VIEWPOINT_CLASSES[klass]
    for _ in range(50):
        axis = rng.normal(size=3)
        r_trg = _axis_angle(axis, math.radians(rng.uniform(lo, hi))) @ r_src
        if r_trg[2, 2] >= math.cos(math.radians(_MAX_TILT_DEG)):
            return r_src, r_trg
    return None


# ----------------------------------------------------------------------------------------
# Pair plans
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Instance:
    """One object instance, shared by the two views of a pair.

    Attributes:
        tex_affine: ``(2, 3)`` canonical -> level-0 photo pixels.
        tex_scale: photo pixels per canonical unit.
        rim: ``(grey level in [0, 1], width in canonical units)`` or None.
    """

    category: str
    texture_photo: str
    tex_affine: np.ndarray
    tex_scale: float
    aspect: float
    inst_field: _SmoothField
    rim: tuple[float, float] | None


@dataclass(frozen=True, eq=False)
class _Occluder:
    """A textured ellipse (``kind`` 0) or rectangle (1) over the image.

    Attributes:
        centre: ``(2,)`` image px. half: ``(2,)`` half axes, px. angle: radians.
        photo_affine: ``(2, 3)`` local occluder px -> level-0 photo px.
    """

    kind: int
    centre: np.ndarray
    half: np.ndarray
    angle: float
    photo: str
    photo_affine: np.ndarray
    photo_scale: float

    def local(self, p: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        d = p - self.centre.astype(p.dtype)
        return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Approximate signed distance in px (negative inside) at image points ``(..., 2)``."""
        q = self.local(p)
        hx, hy = float(self.half[0]), float(self.half[1])
        if self.kind == 0:
            return (np.hypot(q[..., 0] / hx, q[..., 1] / hy) - 1) * min(hx, hy)
        return np.maximum(np.abs(q[..., 0]) - hx, np.abs(q[..., 1]) - hy)

    def covers(self, p: np.ndarray) -> np.ndarray:
        """``(...)`` bool: the points ``(..., 2)`` lie under the occluder."""
        return self.distance(p) < 0


@dataclass(frozen=True, eq=False)
class _Photometric:
    """Per-view photometric change, applied to the 8-bit image."""

    gamma: float
    gains: tuple[float, float, float]
    contrast: float
    brightness: float
    blur_sigma: float
    noise_sigma: float
    noise_seed: int

    def apply(self, image: Image.Image) -> Image.Image:
        """The changed RGB image: a per-channel tone curve, then blur, then grey noise."""
        x = np.arange(256) / 255.0
        gains = np.asarray(self.gains)[:, None]
        y = ((x[None] ** self.gamma) * gains - 0.5) * self.contrast + 0.5 + self.brightness  # (3, 256)
        image = image.point(np.clip(np.floor(y * 255 + 0.5), 0, 255).astype(int).ravel().tolist())
        if self.blur_sigma <= 0 and self.noise_sigma <= 0:
            return image
        arr = np.asarray(image, dtype=np.float32)
        if self.blur_sigma > 0:
            arr = ndimage.gaussian_filter(arr, (self.blur_sigma, self.blur_sigma, 0), truncate=2.5)
        if self.noise_sigma > 0:
            noise = np.random.default_rng(self.noise_seed).standard_normal(arr.shape[:2], dtype=np.float32)
            arr += (noise * np.float32(self.noise_sigma * 255))[..., None]
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def _sample_photometric(rng: np.random.Generator) -> _Photometric:
    return _Photometric(
        gamma=float(np.exp(rng.uniform(-0.25, 0.25))),
        gains=tuple(float(g) for g in rng.uniform(0.85, 1.15, 3)),
        contrast=float(rng.uniform(0.7, 1.3)),
        brightness=float(rng.uniform(-0.1, 0.1)),
        blur_sigma=float(rng.uniform(0.4, 1.2)) if rng.random() < 0.35 else 0.0,
        noise_sigma=float(rng.uniform(0.005, 0.03)) if rng.random() < 0.5 else 0.0,
        noise_seed=int(rng.integers(2**31)),
    )


@dataclass(frozen=True, eq=False)
class _View:
    """One image of a pair, fully determined (rendering only reads it).

    Attributes:
        size_wh: ``(W, H)``. warp: image px <-> canonical. px_per_unit: local scale at the
        object centre. kps_px: ``(K, 2)`` all template keypoints in image px. visible:
        ``(K,)`` in the frame and not under the occluder. bbox: ``(x1, y1, x2, y2)`` ints.
        window: ``(x1, y1, x2, y2)`` the pixels the object may touch. bg_box: the photo
        region (level-0 px) resized to the background.
    """

    size_wh: tuple[int, int]
    warp: _ViewWarp
    px_per_unit: float
    kps_px: np.ndarray
    visible: np.ndarray
    bbox: tuple[int, int, int, int]
    window: tuple[int, int, int, int]
    rel_size: float
    truncated: bool
    background_photo: str
    bg_box: tuple[float, float, float, float]
    occluder: _Occluder | None
    photometric: _Photometric


@dataclass(frozen=True, eq=False)
class _PairPlan:
    category: str
    instance: _Instance
    views: tuple[_View, _View]
    viewpoint_angle: float
    scale_ratio: float


def _sample_texture(rng: np.random.Generator, photos: tuple[str, ...]) -> tuple[str, np.ndarray, float] | None:
    """A photo and a square region of it (rotated), not too dark nor flat."""
    for _ in range(30):
        name = str(rng.choice(photos))
        h, w = _photo_pyramid(name)[0].shape[:2]
        scale = rng.uniform(0.125, 0.3) * min(h, w)  # photo px per canonical unit
        angle = rng.uniform(-np.pi, np.pi)
        reach = scale * math.sqrt(2) * 1.3  # covers the canonical square [-1.3, 1.3]^2
        if 2 * reach >= min(h, w):
            continue
        centre = np.array([rng.uniform(reach, w - reach), rng.uniform(reach, h - reach)])
        c, s = math.cos(angle), math.sin(angle)
        affine = np.array([[c * scale, -s * scale, centre[0]], [s * scale, c * scale, centre[1]]])
        grid = np.stack(np.meshgrid(np.linspace(-1, 1, 12), np.linspace(-1, 1, 12)), -1).reshape(-1, 2)
        values = _sample_bilinear(_photo_pyramid(name)[0], grid @ affine[:, :2].T + affine[:, 2]).mean(-1) / 255
        if values.mean() > 0.12 and values.std() > 0.04:
            return name, affine, float(scale)
    return None


def _sample_occluder(
    rng: np.random.Generator, photos: list[str], kps: np.ndarray, extent: float
) -> _Occluder:
    """An occluder centred near one of ``kps`` (``(n, 2)`` in-frame keypoints, px)."""
    centre = kps[rng.integers(len(kps))] + rng.uniform(-0.2, 0.2, 2) * extent
    half = np.maximum(rng.uniform(0.15, 0.35, 2) * extent, 3.0)
    name = str(rng.choice(photos))
    h, w = _photo_pyramid(name)[0].shape[:2]
    radius = float(np.hypot(*half)) + 2  # image px
    scale = min(rng.uniform(0.6, 1.5), 0.45 * min(h, w) / radius)  # photo px per image px
    reach = scale * radius
    pc = np.array([rng.uniform(reach, w - reach), rng.uniform(reach, h - reach)])
    rot = rng.uniform(-np.pi, np.pi)
    c, s = math.cos(rot), math.sin(rot)
    return _Occluder(
        kind=int(rng.integers(2)),
        centre=centre,
        half=half,
        angle=float(rng.uniform(0, np.pi)),
        photo=name,
        photo_affine=np.array([[c * scale, -s * scale, pc[0]], [s * scale, c * scale, pc[1]]]),
        photo_scale=float(scale),
    )


def _place(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, size_wh: tuple[int, int], truncate: bool) -> np.ndarray:
    """Translation ``(2,)`` for an object whose extent at the origin is ``[lo, hi]`` px:
    inside the frame with a 1 px margin, or (``truncate``) 15-45 % out on one side."""
    centre = np.zeros(2)
    axis = int(rng.integers(2)) if truncate else -1
    for ax in (0, 1):
        n = size_wh[ax]
        if ax == axis:
            out = rng.uniform(0.15, 0.45) * (hi[ax] - lo[ax])
            centre[ax] = -lo[ax] - out if rng.random() < 0.5 else n - hi[ax] + out
        else:
            a, b = 1 - lo[ax], n - 1 - hi[ax]
            centre[ax] = rng.uniform(a, b) if b > a else (a + b) / 2
    return centre


def _plan_view(
    rng: np.random.Generator,
    instance: _Instance,
    rotation: np.ndarray,
    rel_size: float,
    background: str,
    occluders: list[str],
) -> _View | None:
    """One view of ``instance``: image size, warp, placement, truncation, occluder,
    background region and photometric change; None when the draw must be redone.

    ``rotation`` is the view's ``(3, 3)`` 3D rotation; ``rel_size`` the wanted
    ``max(outline w, h) / max(W, H)`` (reduced if the outline would not fit the frame)."""
    tmpl = _template(instance.category)
    w, h = (int(v) for v in rng.integers(_IMAGE_SIDES[0], _IMAGE_SIDES[1] + 1, 2))
    warp = _ViewWarp(_plane_homography(rotation), instance.aspect, instance.inst_field,
                     _sample_field(rng, lipschitz=0.12, max_amp=0.03))
    m = len(tmpl.outline)
    pts = warp.forward(np.concatenate([tmpl.outline, tmpl.kps]))  # at scale 1, centre 0
    lo1, hi1 = pts[:m].min(0), pts[:m].max(0)
    ext1 = hi1 - lo1
    scale = rel_size * max(w, h) / float(ext1.max())
    scale = min(scale, (w - 2) / float(ext1[0]), (h - 2) / float(ext1[1]))
    truncate = bool(rng.random() < _P_TRUNCATE)
    centre = _place(rng, scale * lo1, scale * hi1, (w, h), truncate)
    warp = warp.moved(scale, centre)
    outline = scale * pts[:m] + centre
    kps = scale * pts[m:] + centre
    olo, ohi = outline.min(0), outline.max(0)
    truncated = bool(olo[0] < 0 or olo[1] < 0 or ohi[0] > w or ohi[1] > h)
    bbox = (max(0, math.floor(olo[0])), max(0, math.floor(olo[1])), min(w, math.ceil(ohi[0])), min(h, math.ceil(ohi[1])))
    if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
        return None
    window = (max(0, math.floor(olo[0]) - 2), max(0, math.floor(olo[1]) - 2),
              min(w, math.ceil(ohi[0]) + 2), min(h, math.ceil(ohi[1]) + 2))
    in_frame = (kps[:, 0] >= 0) & (kps[:, 1] >= 0) & (kps[:, 0] < w - 0.01) & (kps[:, 1] < h - 0.01)
    occluder = None
    if rng.random() < _P_OCCLUDE and in_frame.any():
        occluder = _sample_occluder(rng, occluders, kps[in_frame], float((ohi - olo).max()))
    visible = in_frame & ~occluder.covers(kps) if occluder is not None else in_frame
    centre_px = kps.mean(0) if in_frame.all() else (olo + ohi) / 2
    det = abs(float(np.linalg.det(warp.value_and_jacobian(centre_px[None], 1e-3)[1][0])))
    # background: a region of the photo with the image's aspect ratio
    ph, pw = _photo_pyramid(background)[0].shape[:2]
    bw = w * min(pw / w, ph / h) * rng.uniform(0.35, 1.0)
    bh = bw * h / w
    x0, y0 = rng.uniform(0, pw - bw), rng.uniform(0, ph - bh)
    return _View(
        size_wh=(w, h),
        warp=warp,
        px_per_unit=1.0 / math.sqrt(det),
        kps_px=kps,
        visible=visible,
        bbox=bbox,
        window=window,
        rel_size=float(scale * ext1.max() / max(w, h)),
        truncated=truncated,
        background_photo=background,
        bg_box=(float(x0), float(y0), float(x0 + bw), float(y0 + bh)),
        occluder=occluder,
        photometric=_sample_photometric(rng),
    )


def _try_pair(rng: np.random.Generator, split: str, category: str) -> _PairPlan | None:
    """One draw of a pair of ``category``; None when it fails a constraint (redrawn)."""
    pools = _photo_pools(split)
    texture = _sample_texture(rng, pools.textures)
    if texture is None:
        return None
    photo, affine, tex_scale = texture
    rim = None
    if rng.random() < 0.75:
        grey = rng.uniform(0.0, 0.15) if rng.random() < 0.5 else rng.uniform(0.85, 1.0)
        rim = (float(grey), float(rng.uniform(0.015, 0.035)))
    instance = _Instance(
        category=category,
        texture_photo=photo,
        tex_affine=affine,
        tex_scale=tex_scale,
        aspect=float(np.exp(rng.uniform(-0.25, 0.25))),
        inst_field=_sample_field(rng, lipschitz=0.25, max_amp=0.06),
        rim=rim,
    )
    rotations = _sample_rotations(rng, int(rng.choice(3, p=_VIEWPOINT_PROBS)))
    if rotations is None:
        return None
    lo, hi = _SCALE_CLASSES[int(rng.choice(3, p=_SCALE_PROBS))]
    ratio = rng.uniform(lo, hi)
    small = math.exp(rng.uniform(math.log(_REL_SIZE[0]), math.log(_REL_SIZE[1] / ratio)))
    sizes = [small, small * ratio]
    if rng.random() < 0.5:
        sizes.reverse()
    backgrounds = [b for b in pools.backgrounds if b != photo]
    bgs = [str(b) for b in rng.choice(backgrounds, size=2, replace=False)]
    views = []
    for rotation, size, bg in zip(rotations, sizes, bgs, strict=True):
        occluders = [p for p in pools.occluders if p not in (photo, bg)]
        view = _plan_view(rng, instance, rotation, size, bg, occluders)
        if view is None:
            return None
        views.append(view)
    if int((views[0].visible & views[1].visible).sum()) < _MIN_COMMON_KPS:
        return None
    rel = sorted(v.rel_size for v in views)
    return _PairPlan(
        category=category,
        instance=instance,
        views=(views[0], views[1]),
        viewpoint_angle=_rotation_angle(rotations[1] @ rotations[0].T),
        scale_ratio=rel[1] / rel[0],
    )


def _plan_pair(seed: int, split: str, index: int) -> _PairPlan:
    """The pair ``index`` of ``split``: a function of ``(seed, split, index)`` only."""
    category = CATEGORIES[index % len(CATEGORIES)]
    for attempt in range(_MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index, attempt])
        plan = _try_pair(rng, split, category)
        if plan is not None:
            return plan
    raise RuntimeError(f"synthetic benchmark: no valid pair for {split} index {index} in {_MAX_ATTEMPTS} attempts")


# ----------------------------------------------------------------------------------------
# Rendering and writing
# ----------------------------------------------------------------------------------------


def _pixel_grid(window: tuple[int, int, int, int]) -> np.ndarray:
    """Float32 ``(h, w, 2)`` centres ``(x + 0.5, y + 0.5)`` of the window's pixels."""
    x0, y0, x1, y1 = window
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32) + 0.5, np.arange(y0, y1, dtype=np.float32) + 0.5)
    return np.stack([gx, gy], -1)


def _level_for(pyramid: tuple[np.ndarray, ...], photo_px_per_px: float) -> int:
    return int(np.clip(math.floor(math.log2(max(photo_px_per_px, 1e-6))), 0, len(pyramid) - 1))


def _render_object(
    view: _View, instance: _Instance, pyramid: tuple[np.ndarray, ...], sdf: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The object over ``view.window``: float32 RGB ``(h, w, 3)`` in [0, 1] and alpha ``(h, w)``.

    Every pixel centre is mapped to canonical coordinates by ``view.warp.backward``; alpha
    comes from the template's signed distance (anti-aliased over one pixel), colour from
    the texture ``pyramid`` (uint8 levels) through ``instance.tex_affine``."""
    u = view.warp.backward(_pixel_grid(view.window))
    d_px = _sample_sdf(sdf, u) * np.float32(view.px_per_unit)
    alpha = np.clip(0.5 - d_px, 0.0, 1.0)
    rgb = np.zeros(alpha.shape + (3,), dtype=np.float32)
    inside = alpha > 0
    level = _level_for(pyramid, instance.tex_scale / view.px_per_unit)
    a = instance.tex_affine.astype(np.float32) / np.float32(2**level)
    uu = u[inside]
    colour = _sample_bilinear(pyramid[level], uu @ a[:, :2].T + a[:, 2]) / 255
    if instance.rim is not None:
        grey, width = instance.rim
        weight = np.clip(d_px[inside] + max(1.0, width * view.px_per_unit) + 0.5, 0.0, 1.0)[:, None]
        colour = colour * (1 - weight) + np.float32(grey) * weight
    rgb[inside] = colour
    return rgb, alpha


def _render_occluder(occ: _Occluder, size_wh: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """``(window, rgb (h, w, 3), alpha (h, w))`` of an occluder in an image of ``size_wh``."""
    w, h = size_wh
    reach = float(np.hypot(*occ.half)) + 2
    window = (max(0, math.floor(occ.centre[0] - reach)), max(0, math.floor(occ.centre[1] - reach)),
              min(w, math.ceil(occ.centre[0] + reach)), min(h, math.ceil(occ.centre[1] + reach)))
    if window[2] <= window[0] or window[3] <= window[1]:
        return window, np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.float32)
    p = _pixel_grid(window)
    alpha = np.clip(0.5 - occ.distance(p), 0.0, 1.0).astype(np.float32)
    pyramid = _photo_pyramid(occ.photo)
    level = _level_for(pyramid, occ.photo_scale)
    a = occ.photo_affine.astype(np.float32) / np.float32(2**level)
    rgb = _sample_bilinear(pyramid[level], occ.local(p) @ a[:, :2].T + a[:, 2]) / 255
    return window, rgb, alpha


def _blend(img: np.ndarray, window: tuple[int, int, int, int], rgb: np.ndarray, alpha: np.ndarray) -> None:
    """Composite float ``rgb`` ``(h, w, 3)`` in [0, 1] with ``alpha`` ``(h, w)`` over the
    ``window`` (``x1, y1, x2, y2``) of the uint8 image ``img`` ``(H, W, 3)``, in place."""
    x0, y0, x1, y1 = window
    under = img[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    img[y0:y1, x0:x1] = np.clip(a * (rgb * 255) + (1 - a) * under + 0.5, 0, 255).astype(np.uint8)


def _render_view(view: _View, instance: _Instance) -> tuple[bytes, bool]:
    """JPEG bytes of the view and whether the occluder hides part of the object."""
    w, h = view.size_wh
    img = _resized_region(view.background_photo, view.bg_box, (w, h)).copy()
    x0, y0, x1, y1 = view.window
    rgb, alpha = _render_object(view, instance, _photo_pyramid(instance.texture_photo), _template_sdf(instance.category))
    _blend(img, view.window, rgb, alpha)
    occluded = False
    if view.occluder is not None:
        owin, orgb, oalpha = _render_occluder(view.occluder, view.size_wh)
        if oalpha.size:
            obj_alpha = np.zeros((h, w), np.float32)
            obj_alpha[y0:y1, x0:x1] = alpha
            hidden_area = float((obj_alpha[owin[1] : owin[3], owin[0] : owin[2]] * oalpha).sum())
            hidden_kp = bool((view.occluder.covers(view.kps_px) & _in_frame(view)).any())
            occluded = hidden_area >= 1.0 or hidden_kp
            _blend(img, owin, orgb, oalpha)
    buf = BytesIO()
    view.photometric.apply(Image.fromarray(img)).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), occluded


def _in_frame(view: _View) -> np.ndarray:
    w, h = view.size_wh
    k = view.kps_px
    return (k[:, 0] >= 0) & (k[:, 1] >= 0) & (k[:, 0] < w - 0.01) & (k[:, 1] < h - 0.01)


def _xy(p: np.ndarray) -> list[float]:
    return [round(float(p[0]), 2), round(float(p[1]), 2)]


def _write_pair(out: Path, seed: int, split: str, index: int) -> str:
    """Render and write pair ``index`` of ``split`` under ``out``; return its layout line."""
    plan = _plan_pair(seed, split, index)
    cat, inst = plan.category, plan.instance
    stems = [f"{cat}_{split}_{index:05d}_{v}" for v in (0, 1)]
    occluded = []
    for stem, view in zip(stems, plan.views, strict=True):
        jpeg, occ = _render_view(view, inst)
        occluded.append(occ)
        (out / "JPEGImages" / cat / f"{stem}.jpg").write_bytes(jpeg)
        w, h = view.size_wh
        annotation = {
            "filename": f"{stem}.jpg",
            "category": cat,
            "image_width": w,
            "image_height": h,
            "image_depth": 3,
            "bndbox": list(view.bbox),
            "kps": {str(k): (_xy(p) if view.visible[k] else None) for k, p in enumerate(view.kps_px)},
            "truncated": int(view.truncated),
            "occluded": int(occ),
            "source_photo": inst.texture_photo,
            "background_photo": view.background_photo,
            "occluder_photo": view.occluder.photo if view.occluder is not None else None,
        }
        (out / "ImageAnnotation" / cat / f"{stem}.json").write_text(json.dumps(annotation, indent=1) + "\n")
    src, trg = plan.views
    common = np.flatnonzero(src.visible & trg.visible)
    line = f"{index}-{stems[0]}-{stems[1]}:{cat}"
    pair = {
        "pair_id": index,
        "src_imname": f"{stems[0]}.jpg",
        "trg_imname": f"{stems[1]}.jpg",
        "src_imsize": [src.size_wh[0], src.size_wh[1], 3],
        "trg_imsize": [trg.size_wh[0], trg.size_wh[1], 3],
        "src_bndbox": list(src.bbox),
        "trg_bndbox": list(trg.bbox),
        "src_pose": 0,
        "trg_pose": 0,
        "src_kps": [_xy(src.kps_px[k]) for k in common],
        "trg_kps": [_xy(trg.kps_px[k]) for k in common],
        "kps_ids": [str(int(k)) for k in common],
        "category": cat,
        "mirror": 0,
        "viewpoint_variation": int(np.searchsorted(_VIEWPOINT_THRESHOLDS, plan.viewpoint_angle, side="right")),
        "scale_variation": int(np.searchsorted(_SCALE_THRESHOLDS, plan.scale_ratio, side="right")),
        "truncation": int(src.truncated) + 2 * int(trg.truncated),
        "occlusion": int(occluded[0]) + 2 * int(occluded[1]),
    }
    (out / "PairAnnotation" / split / f"{line}.json").write_text(json.dumps(pair, indent=1) + "\n")
    return line
