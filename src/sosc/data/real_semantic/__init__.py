"""Offline real-semantic correspondence set: hand-annotated real photographs, in the SPair-71k layout.

:func:`generate_real_semantic` writes pairs of *different* objects of the same category
(other people's faces, other birds, other cars, other dogs) from photographs that ship inside
installed Python packages (scikit-image, matplotlib, mahotas, foolbox, scikit-learn; nothing is
downloaded), so that KBC and the matchers can be measured on real semantic pairs, at
controlled object sizes. The annotations (``annotations.json``, package data) give every
photo's package, path, licence and SHA-256, and per object its keypoints (fixed order and
names per category, ``null`` where not visible), object box, coarse heading and
truncation/occlusion.

Pairs (split ``val`` to choose defaults, ``test`` to report; ``trn`` is empty; the two
splits share no instance pair and no background photograph):

* ``photo`` pairs: the two original photographs (e.g. the portrait pair astronaut <->
  grace_hopper, both directions); a photograph with several annotated instances (the geese,
  the ibises) shows them all there, as same-category distractors (as in SPair-71k);
* ``pasted`` pairs: each object cut out with a feathered super-ellipse mask and pasted into
  a background photograph (480 px on the longer side) so that the box of the pair's common
  keypoints has a longer side near 24, 48, 96 or 160 px (:data:`SIZE_BINS`); source and
  target bins vary independently. The bins are in the pair JSON (``src_kp_bin``,
  ``trg_kp_bin``, and the measured ``src_kp_size``/``trg_kp_size``), fields the SPair-71k
  reader ignores.

Coordinates: keypoints and boxes in the written image's pixels, continuous convention
(pixel ``i`` covers ``[i, i + 1)``), keypoints rounded to 2 decimals, boxes as ints (floor /
ceil of the mapped object box, clipped to the image). Every pair keeps only keypoints
visible in both objects, all inside their images. Difficulty flags: ``viewpoint_variation``
from the headings' difference (0 below 17.5 deg, 1 below 37.5, 2 above);
``scale_variation`` from the ratio of the relative object sizes (0 below 1.5, 1 below 2.25,
2 above); ``truncation``/``occlusion`` 0 none, 1 source, 2 target, 3 both (an object is
truncated when its box leaves the frame or was cut in its photo, occluded as annotated).

Same-photo instances: the three geese come from one photograph (and the two ibises from
another), so each carries an ``outline`` (and ``occluders``, the instances in front of it); a
pasted goose has the other geese of its photo cut out of its mask
(:class:`~sosc.data.real_semantic.compose.KeepMap`), so no second goose's head or body comes
along (the image annotation lists them as ``paste.removed_instances``).

>>> root = generate_real_semantic("/tmp/sosc-real-semantic")  # doctest: +SKIP
"""

from sosc.data.real_semantic.annotations import Annotations, Instance, Photo, load_annotations
from sosc.data.real_semantic.pairs import IMAGE_SIDE, SIZE_BINS, size_bin
from sosc.data.real_semantic.write import (
    GENERATOR_VERSION,
    MARKER_NAME,
    SPLITS,
    RealSemanticSpec,
    generate_real_semantic,
    is_complete,
)


def categories() -> tuple[str, ...]:
    """The categories of the shipped annotations, in order (``face``, ``bird``, ``car``, ``dog``)."""
    return load_annotations().categories


__all__ = [
    "GENERATOR_VERSION",
    "IMAGE_SIDE",
    "MARKER_NAME",
    "SIZE_BINS",
    "SPLITS",
    "Annotations",
    "Instance",
    "Photo",
    "RealSemanticSpec",
    "categories",
    "generate_real_semantic",
    "is_complete",
    "load_annotations",
    "size_bin",
]
