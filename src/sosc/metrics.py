"""PCK, the percentage of correct keypoints, as plain functions and a torchmetrics metric.

``PCK@alpha`` counts a predicted keypoint as correct when its distance to the ground
truth is at most ``alpha * L``, both in **original target pixels** (``L`` per pair, see
:func:`sosc.data.records.pck_bound`). Padded keypoints (``valid`` False) never count.
Values are fractions in ``[0, 1]``; only printed tables multiply by 100.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from sosc.errors import ShapeError, check_shape


def keypoint_correct(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, bound: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Which keypoints are within ``alpha * bound`` of the ground truth.

    Args:
        pred, gt: ``(B, N, 2)`` ``(x, y)`` in the pixels ``bound`` is in.
        valid: ``(B, N)`` bool.
        bound: ``(B,)`` the PCK ``L`` per pair.
        alpha: threshold factor.

    Returns:
        ``(B, N)`` bool, False at padded entries.

    >>> p = torch.tensor([[[0.0, 0.0], [5.0, 0.0], [9.0, 9.0]]])
    >>> keypoint_correct(p, torch.zeros(1, 3, 2), torch.tensor([[True, True, False]]), torch.tensor([40.0]), 0.1).tolist()
    [[True, False, False]]
    """
    check_shape("pred", pred, ("B", "N", 2))
    check_shape("gt", gt, (pred.shape[0], pred.shape[1], 2))
    check_shape("valid", valid, (pred.shape[0], pred.shape[1]))
    check_shape("bound", bound, (pred.shape[0],))
    dist = torch.linalg.vector_norm((pred - gt).float(), dim=-1)
    return valid & (dist <= alpha * bound.float()[:, None])


def pck_per_pair(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, bound: torch.Tensor, alpha: float = 0.1
) -> torch.Tensor:
    """Each pair's fraction of correct valid keypoints, ``(B,)``; NaN for a pair with none.

    >>> p = torch.tensor([[[0.0, 0.0], [5.0, 0.0]]])
    >>> pck_per_pair(p, torch.zeros(1, 2, 2), torch.ones(1, 2, dtype=torch.bool), torch.tensor([40.0])).tolist()
    [0.5]
    """
    correct = keypoint_correct(pred, gt, valid, bound, alpha)
    count = valid.sum(-1)
    frac = correct.sum(-1).float() / count.clamp_min(1)
    return torch.where(count > 0, frac, torch.full_like(frac, float("nan")))


def first_occurrence(ids: torch.Tensor) -> torch.Tensor:
    """``(P,)`` bool: True at the first occurrence of each id ``>= 0`` and at every id ``< 0``.

    >>> first_occurrence(torch.tensor([3, 1, 3, -1, -1, 1])).tolist()
    [True, True, False, True, True, False]
    """
    ids = ids.long().flatten()
    keep = ids < 0
    if keep.all():
        return keep
    order = torch.arange(len(ids), device=ids.device)
    unique, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((len(unique),), len(ids), dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, order, reduce="amin")
    keep[first] = True
    return keep


def _key(alpha: float) -> str:
    return f"{alpha:g}"


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor | None:
    """A list state concatenated along dim 0 (None when empty); a synced state as it is."""
    if isinstance(state, torch.Tensor):
        return state
    return dim_zero_cat(state) if state else None


class PCK(Metric):
    """PCK at several thresholds, per pair and per keypoint, per category and per group.

    Args:
        alphas: thresholds, e.g. ``(0.05, 0.1, 0.15)``.
        categories: category names; ``update`` may then take names or ids. Without them,
            ids are reported as given.
        groups: names of integer per-pair attributes to break results down by (e.g. the
            SPair-71k difficulty flags, or the object size class).
        group_labels: optional names of a group's values, e.g. ``{"size": ["small", ...]}``:
            reported as ``size=small`` instead of ``size=0``.

    ``update(pred_kps, gt_kps, valid, bound, category=None, groups=None, ids=None)`` takes
    keypoints ``(B, N, 2)`` in the pixels of ``bound`` ``(B,)``, ``valid`` ``(B, N)`` bool,
    ``category`` a list of ``B`` names or a ``(B,)`` int tensor, ``groups`` a dict name ->
    ``(B,)`` ints, ``ids`` ``(B,)`` non-negative pair ids (dataset indices). Pairs whose
    bound is not finite or that have no valid keypoint are counted apart (``skipped``) and
    never enter a mean. A pair id seen more than once is scored once (its first result): a
    distributed sampler pads the shards with repeated pairs, which would otherwise count twice.

    ``compute()`` returns a dict of floats: ``pck@A`` (mean over pairs of each pair's fraction
    of correct keypoints), ``pck_kp@A`` (over all valid keypoints), ``pck@A/<category>``,
    ``pck@A/<group>=<value>``, and the counts ``pairs``, ``keypoints``, ``skipped`` and
    ``pairs/<category>``, ``pairs/<group>=<value>``.
    States are concatenated across processes and repeated ids dropped, so the distributed
    result equals the single-process one.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        alphas: Sequence[float] = (0.05, 0.1, 0.15),
        categories: Sequence[str] | None = None,
        groups: Sequence[str] = (),
        group_labels: dict[str, Sequence[str]] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not alphas or any(a <= 0 for a in alphas):
            raise ShapeError(f"alphas must be positive thresholds, got {alphas}")
        self.alphas = tuple(float(a) for a in alphas)
        self.categories = list(categories) if categories is not None else None
        self.group_names = tuple(groups)
        self.group_labels = {k: list(v) for k, v in (group_labels or {}).items()}
        self.add_state("correct", default=[], dist_reduce_fx="cat")  # (P, A) correct counts
        self.add_state("count", default=[], dist_reduce_fx="cat")  # (P,) valid counts
        self.add_state("category", default=[], dist_reduce_fx="cat")  # (P,) ids, -1 unknown
        self.add_state("group", default=[], dist_reduce_fx="cat")  # (P, G)
        self.add_state("ids", default=[], dist_reduce_fx="cat")  # (P,) pair ids, -1 unknown
        self.add_state("skipped_ids", default=[], dist_reduce_fx="cat")  # ids of skipped pairs

    def _category_ids(self, category, batch: int, device) -> torch.Tensor:
        if category is None:
            return torch.full((batch,), -1, dtype=torch.long, device=device)
        if isinstance(category, torch.Tensor):
            return category.to(device=device, dtype=torch.long).reshape(batch)
        if self.categories is None:
            raise ShapeError("PCK got category names but no `categories` list: pass PCK(categories=[...])")
        try:
            return torch.tensor([self.categories.index(c) for c in category], dtype=torch.long, device=device)
        except ValueError as err:
            raise ShapeError(f"unknown category in {list(category)}; PCK knows {self.categories}") from err

    def update(
        self,
        pred_kps: torch.Tensor,
        gt_kps: torch.Tensor,
        valid: torch.Tensor,
        bound: torch.Tensor,
        category: Sequence[str] | torch.Tensor | None = None,
        groups: dict[str, torch.Tensor] | None = None,
        ids: torch.Tensor | None = None,
    ) -> None:
        batch = pred_kps.shape[0]
        ids = (
            torch.full((batch,), -1, dtype=torch.long, device=pred_kps.device)
            if ids is None
            else torch.as_tensor(ids, device=pred_kps.device).long().reshape(batch)
        )
        correct = torch.stack(
            [keypoint_correct(pred_kps, gt_kps, valid, bound, a).sum(-1) for a in self.alphas], dim=-1
        )
        count = valid.sum(-1)
        keep = (count > 0) & torch.isfinite(bound) & (bound > 0)
        groups = groups or {}
        missing = [g for g in self.group_names if g not in groups]
        if missing:
            raise ShapeError(f"PCK.update: groups {missing} were declared but not given")
        group = (
            torch.stack([groups[g].to(self.device).long().reshape(batch) for g in self.group_names], dim=-1)
            if self.group_names
            else torch.zeros(batch, 0, dtype=torch.long, device=self.device)
        )
        self.correct.append(correct[keep])
        self.count.append(count[keep])
        self.category.append(self._category_ids(category, batch, pred_kps.device)[keep])
        self.group.append(group[keep])
        self.ids.append(ids[keep])
        self.skipped_ids.append(ids[~keep])

    def _label(self, group: str, value: int) -> str:
        labels = self.group_labels.get(group)
        return labels[value] if labels is not None and 0 <= value < len(labels) else str(value)

    def _name(self, cid: int) -> str:
        if self.categories is not None and 0 <= cid < len(self.categories):
            return self.categories[cid]
        return str(cid)

    def compute(self) -> dict[str, float]:
        # States are lists of per-batch tensors, or one tensor after a distributed sync.
        skipped_ids = _cat(self.skipped_ids)
        skipped = 0.0 if skipped_ids is None else float(first_occurrence(skipped_ids).sum())
        count = _cat(self.count)
        if count is None or count.numel() == 0:
            return {"pairs": 0.0, "keypoints": 0.0, "skipped": skipped}
        first = first_occurrence(_cat(self.ids).reshape(len(count)))
        count = count[first].float()
        correct = _cat(self.correct).reshape(len(first), len(self.alphas))[first].float()
        category = _cat(self.category).reshape(len(first))[first]
        group = _cat(self.group).reshape(len(first), len(self.group_names))[first]
        frac = correct / count[:, None]
        out: dict[str, float] = {
            "pairs": float(len(count)),
            "keypoints": float(count.sum()),
            "skipped": skipped,
        }
        for i, a in enumerate(self.alphas):
            k = _key(a)
            out[f"pck@{k}"] = float(frac[:, i].mean())
            out[f"pck_kp@{k}"] = float(correct[:, i].sum() / count.sum())
            for cid in sorted(set(category.tolist()) - {-1}):  # -1: no category given
                m = category == cid
                out[f"pck@{k}/{self._name(cid)}"] = float(frac[m, i].mean())
                out[f"pairs/{self._name(cid)}"] = float(m.sum())
            for g, name in enumerate(self.group_names):
                for value in sorted(set(group[:, g].tolist())):
                    m = group[:, g] == value
                    out[f"pck@{k}/{name}={self._label(name, value)}"] = float(frac[m, i].mean())
                    out[f"pairs/{name}={self._label(name, value)}"] = float(m.sum())
        return out


class KBCDecisions(Metric):
    """What KBC decided over an evaluation: pairs by reason, keypoints by the pass they kept.

    ``update(info, valid, ids)`` takes a :class:`~sosc.kbc.KBCOutput`, the ``(B, N)`` valid
    mask and ``(B,)`` pair ids; ``compute()`` returns counts keyed as
    :meth:`sosc.kbc.KBCOutput.counts` (``pairs``, ``pairs <reason>`` for each of
    :data:`sosc.kbc.plan.REASONS`, ``keypoints``, ``keypoints zoomed, pass 2 kept``,
    ``keypoints zoomed, pass 1 kept``, ``pairs source shrunk in pass 1``, and ``matcher passes``
    where every output carried :attr:`~sosc.kbc.KBCOutput.passes`). A pair id seen twice (a distributed sampler's padding)
    counts once, so the distributed result equals the single-process one.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("reason", default=[], dist_reduce_fx="cat")  # (P,)
        self.add_state("valid", default=[], dist_reduce_fx="cat")  # (P,) valid keypoints
        self.add_state("zoomed_pass2", default=[], dist_reduce_fx="cat")  # (P,)
        self.add_state("zoomed_pass1", default=[], dist_reduce_fx="cat")  # (P,)
        self.add_state("shrunk", default=[], dist_reduce_fx="cat")  # (P,) pass 1 shrank the source
        self.add_state("passes", default=[], dist_reduce_fx="cat")  # (P,) KBC's matcher passes, -1: not known
        self.add_state("ids", default=[], dist_reduce_fx="cat")  # (P,)

    def update(self, info, valid: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        batch = valid.shape[0]
        ids = torch.full((batch,), -1, dtype=torch.long, device=valid.device) if ids is None else \
            torch.as_tensor(ids, device=valid.device).long().reshape(batch)
        zoomed = valid & info.refined[:, None].to(valid.device)
        pass2 = info.from_pass2.to(valid.device)
        self.reason.append(info.reason.to(valid.device).long())
        self.valid.append(valid.sum(-1))
        self.zoomed_pass2.append((zoomed & pass2).sum(-1))
        self.zoomed_pass1.append((zoomed & ~pass2).sum(-1))
        shrunk = getattr(info, "pass1_shrunk", None)
        self.shrunk.append(torch.zeros(batch, dtype=torch.long, device=valid.device) if shrunk is None
                           else shrunk.to(valid.device).long())
        passes = getattr(info, "passes", None)
        self.passes.append(torch.full((batch,), -1, dtype=torch.long, device=valid.device) if passes is None
                           else passes.to(valid.device).long())
        self.ids.append(ids)

    def compute(self) -> dict[str, int]:
        from sosc.kbc.plan import REASONS

        reason = _cat(self.reason)
        if reason is None or reason.numel() == 0:
            return {"pairs": 0}
        keep = first_occurrence(_cat(self.ids).reshape(len(reason)))
        reason = reason[keep]
        out = {"pairs": int(keep.sum())}
        for code, name in enumerate(REASONS):
            out[f"pairs {name}"] = int((reason == code).sum())
        out["pairs source shrunk in pass 1"] = int(_cat(self.shrunk)[keep].sum())
        passes = _cat(self.passes)[keep]
        if (passes >= 0).all():
            out["matcher passes"] = int(passes.sum())
        out["keypoints"] = int(_cat(self.valid)[keep].sum())
        out["keypoints zoomed, pass 2 kept"] = int(_cat(self.zoomed_pass2)[keep].sum())
        out["keypoints zoomed, pass 1 kept"] = int(_cat(self.zoomed_pass1)[keep].sum())
        return out


def decisions_line(counts: dict[str, int]) -> str:
    """One line that says what KBC decided (for reports and logs).

    >>> decisions_line({"pairs": 10, "pairs zoomed": 6, "pairs large enough": 4, "pairs no box": 0,
    ...                 "pairs kbc off": 0, "keypoints": 50, "keypoints zoomed, pass 2 kept": 28,
    ...                 "keypoints zoomed, pass 1 kept": 2})
    'KBC zoomed 6 of 10 pairs (4 large enough, 0 without a box); of their 30 keypoints 28 kept pass 2 and 2 kept pass 1 (the choice); the other 20 keypoints are the plain pass (no zoom)'
    """
    pairs = counts.get("pairs", 0)
    if counts.get("pairs kbc off", 0) == pairs:
        return f"KBC off: all {pairs} pairs are pass 1"
    kept2 = counts.get("keypoints zoomed, pass 2 kept", 0)
    kept1 = counts.get("keypoints zoomed, pass 1 kept", 0)
    rest = counts.get("keypoints", 0) - kept2 - kept1
    shrunk = counts.get("pairs source shrunk in pass 1", 0)
    first = f"pass 1 shrank the source of {shrunk} pairs (pass1_src_px); " if shrunk else ""
    cost = counts.get("matcher passes")
    last = "" if cost is None else f"; {cost} matcher passes in all ({cost / max(pairs, 1):.2f} per pair)"
    return (first + f"KBC zoomed {counts.get('pairs zoomed', 0)} of {pairs} pairs ({counts.get('pairs large enough', 0)} "
            f"large enough, {counts.get('pairs no box', 0)} without a box); of their {kept2 + kept1} keypoints "
            f"{kept2} kept pass 2 and {kept1} kept pass 1 (the choice); the other {rest} keypoints are the plain "
            "pass (no zoom)" + last)
