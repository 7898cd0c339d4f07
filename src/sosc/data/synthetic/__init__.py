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
    the generator version and the parameters, and the path and size of every file written.
    Leftover ``<root>.partial-*`` folders of an interrupted run are removed. A set that was
    damaged after it was written (a folder deleted, a file missing or cut short) is found by
    the next :func:`generate_synthetic` (one ``stat`` per file) and its damaged pairs and
    layout files are written again, with a warning; a set written before markers recorded
    files is checked through its layout files and, if damaged, named with what to delete. Two generations into the same root at the same time are
    not supported (Lightning's ``prepare_data`` runs on one process).

Modules (each imports only modules listed before it)
    :mod:`~.spec` parameters, splits and completion marker; :mod:`~.photos` the bundled
    photographs; :mod:`~.shapes` the shape templates; :mod:`~.warps` view geometry;
    :mod:`~.photometric` and :mod:`~.occluders` per-view changes; :mod:`~.plan` pair
    planning; :mod:`~.render` rendering a view; :mod:`~.annotations` the JSON records;
    :mod:`~.write` writing the files (worker pool); :mod:`~.repair` repairing a damaged set;
    :mod:`~.generate` the entry point.

>>> root = generate_synthetic("/tmp/sosc-synthetic", n_train=8, n_val=0, n_test=0,
...                           num_workers=1, progress=False)  # doctest: +SKIP
>>> is_complete(root)  # doctest: +SKIP
True
"""

from sosc.data.synthetic.generate import generate_synthetic
from sosc.data.synthetic.photos import (
    TEST_BACKGROUND_PHOTOS,
    TEST_TEXTURE_PHOTOS,
    TRAIN_BACKGROUND_PHOTOS,
    TRAIN_TEXTURE_PHOTOS,
)
from sosc.data.synthetic.render import JPEG_QUALITY
from sosc.data.synthetic.shapes import CATEGORIES, keypoint_names
from sosc.data.synthetic.spec import (
    GENERATOR_VERSION,
    MARKER_NAME,
    SPLITS,
    SyntheticSpec,
    is_complete,
)

__all__ = [
    "CATEGORIES",
    "GENERATOR_VERSION",
    "JPEG_QUALITY",
    "MARKER_NAME",
    "SPLITS",
    "TEST_BACKGROUND_PHOTOS",
    "TEST_TEXTURE_PHOTOS",
    "TRAIN_BACKGROUND_PHOTOS",
    "TRAIN_TEXTURE_PHOTOS",
    "SyntheticSpec",
    "generate_synthetic",
    "is_complete",
    "keypoint_names",
]
