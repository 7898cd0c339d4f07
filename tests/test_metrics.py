"""PCK: hand-computed values for each threshold kind (through the dataset), per pair vs per
keypoint, per category and group, padding, skipped pairs, and a 2-process CPU DDP run."""

import socket
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from sosc.data.dataset import PairDataset
from sosc.data.records import PairRecord
from sosc.errors import ShapeError
from sosc.geometry import points_from_window
from sosc.metrics import PCK, keypoint_correct, pck_per_pair


class TestKeypointCorrect:
    def test_threshold_is_inclusive_and_padding_never_counts(self):
        gt = torch.zeros(1, 4, 2)
        pred = torch.tensor([[[8.0, 0.0], [0.0, 8.01], [6.0, 8.0], [0.0, 0.0]]])  # distances 8, 8.01, 10, 0
        valid = torch.tensor([[True, True, True, False]])
        assert keypoint_correct(pred, gt, valid, torch.tensor([80.0]), 0.1).tolist() == [[True, False, False, False]]
        assert keypoint_correct(pred, gt, valid, torch.tensor([100.0]), 0.1).tolist() == [[True, True, True, False]]

    def test_pck_per_pair_nan_without_valid_keypoints(self):
        out = pck_per_pair(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), torch.tensor([[True, False], [False, False]]),
                           torch.tensor([10.0, 10.0]))
        assert out[0].item() == 1.0 and torch.isnan(out[1])

    def test_shape_errors_name_the_argument(self):
        with pytest.raises(ShapeError, match="bound"):
            keypoint_correct(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.ones(1, 2, dtype=torch.bool),
                             torch.ones(2), 0.1)


def _write(path, h, w):
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
    return path


class TestThresholdKindsThroughTheDataset:
    """Records of each kind -> PairDataset item["pck_bound"] -> PCK, all by hand."""

    @pytest.mark.parametrize(
        ("bound", "trg_bbox", "trg_hw", "trg_kps", "expected"),
        [
            # SPair-71k: max side of the target object box: max(60 - 10, 100 - 20) = 80
            ("bbox", [10, 20, 60, 100], (120, 90), [[20, 30], [50, 90]], 80.0),
            # PF-PASCAL: max side of the target image: max(H=120, W=90) = 120
            ("img", [np.nan] * 4, (120, 90), [[20, 30], [50, 90]], 120.0),
            # PF-WILLOW: max extent of the valid target keypoints: max(55 - 10, 70 - 20) = 50
            ("bbox-kp", [np.nan] * 4, (120, 90), [[10, 20], [55, 30], [30, 70]], 50.0),
        ],
    )
    def test_bound_and_pck(self, tmp_path, bound, trg_bbox, trg_hw, trg_kps, expected):
        src = _write(tmp_path / "src.png", 64, 64)
        trg = _write(tmp_path / "trg.png", *trg_hw)
        kps = np.asarray(trg_kps, np.float32)
        rec = PairRecord("p", src, trg, np.full_like(kps, 5.0), kps, "c", 0, bound,
                         trg_bbox=np.asarray(trg_bbox, np.float32))
        for max_kps in (None, 12):  # padding entries never change the bound
            item = PairDataset([rec], 32, max_kps=max_kps)[0]
            assert item["pck_bound"].item() == pytest.approx(expected)
        # errors of 0.09 L and 0.11 L: correct at alpha 0.1 for the first keypoint only
        gt = points_from_window(item["trg_kps"], item["trg_window"], 32)[None]
        pred = gt.clone()
        pred[0, 0, 0] += 0.09 * expected
        pred[0, 1:, 1] += 0.11 * expected
        pred[0, ~item["valid"]] = 1e9
        metric = PCK(alphas=(0.1, 0.15))
        metric.update(pred, gt, item["valid"][None], item["pck_bound"][None])
        out = metric.compute()
        n = len(kps)
        assert out["pck@0.1"] == pytest.approx(1 / n) and out["pck_kp@0.1"] == pytest.approx(1 / n)
        assert out["pck@0.15"] == 1.0 and out["keypoints"] == n


class TestPCKMetric:
    def _batch(self):
        # pair 0: 2 valid keypoints, 1 correct; pair 1: 4 valid, 3 correct; pair 2: bound NaN (skipped)
        gt = torch.zeros(3, 4, 2)
        pred = torch.zeros(3, 4, 2)
        pred[0, 1, 0] = 5.0
        pred[1, 3, 1] = 5.0
        valid = torch.tensor([[True, True, False, False], [True, True, True, True], [True, True, True, True]])
        bound = torch.tensor([10.0, 10.0, float("nan")])
        return pred, gt, valid, bound

    def test_per_pair_per_keypoint_category_and_groups(self):
        pred, gt, valid, bound = self._batch()
        metric = PCK(alphas=(0.1, 0.6), categories=["cat", "dog"], groups=("occlusion", "size"))
        metric.update(pred, gt, valid, bound, ["cat", "dog", "dog"],
                      {"occlusion": torch.tensor([0, 2, 2]), "size": torch.tensor([0, 0, 1])})
        out = metric.compute()
        assert out["pairs"] == 2 and out["keypoints"] == 6 and out["skipped"] == 1
        assert out["pck@0.1"] == pytest.approx((0.5 + 0.75) / 2)  # mean over pairs
        assert out["pck_kp@0.1"] == pytest.approx(4 / 6)  # over all keypoints
        assert out["pck@0.6"] == 1.0
        assert out["pck@0.1/cat"] == 0.5 and out["pck@0.1/dog"] == 0.75
        assert out["pck@0.1/occlusion=0"] == 0.5 and out["pck@0.1/occlusion=2"] == 0.75
        assert out["pck@0.1/size=0"] == pytest.approx(0.625) and "pck@0.1/size=1" not in out

    def test_batches_accumulate_like_one(self):
        pred, gt, valid, bound = self._batch()
        one, two = PCK(alphas=(0.1,)), PCK(alphas=(0.1,))
        one.update(pred, gt, valid, bound, torch.tensor([0, 1, 1]))
        for sl in (slice(0, 1), slice(1, 3)):
            two.update(pred[sl], gt[sl], valid[sl], bound[sl], torch.tensor([0, 1, 1])[sl])
        assert one.compute() == two.compute()

    @pytest.mark.filterwarnings("ignore:The ``compute`` method")
    def test_empty_and_reset(self):
        metric = PCK()
        assert metric.compute()["pairs"] == 0
        pred, gt, valid, bound = self._batch()
        metric.update(pred, gt, valid, bound)
        metric.reset()
        assert metric.compute()["pairs"] == 0

    def test_all_pairs_skipped(self):
        metric = PCK(alphas=(0.1,))
        metric.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.zeros(1, 2, dtype=torch.bool), torch.ones(1))
        out = metric.compute()
        assert out["pairs"] == 0 and out["skipped"] == 1 and "pck@0.1" not in out

    def test_declared_group_must_be_given(self):
        pred, gt, valid, bound = self._batch()
        with pytest.raises(ShapeError, match="occlusion"):
            PCK(groups=("occlusion",)).update(pred, gt, valid, bound)


# -- distributed: two CPU processes (gloo) give the single-process result ----------------------------
def _fixed_data():
    g = torch.Generator().manual_seed(123)
    b, n = 12, 6
    gt = torch.rand(b, n, 2, generator=g) * 100
    pred = gt + torch.randn(b, n, 2, generator=g) * 8
    valid = torch.rand(b, n, generator=g) > 0.2
    valid[3] = False  # a pair with no valid keypoint: skipped
    bound = torch.rand(b, generator=g) * 60 + 40
    bound[5] = float("nan")  # a pair without a bound: skipped
    category = torch.randint(0, 3, (b,), generator=g)
    size = torch.randint(0, 4, (b,), generator=g)
    return pred, gt, valid, bound, category, size


def _metric():
    return PCK(alphas=(0.05, 0.1, 0.15), categories=["a", "b", "c"], groups=("size",))


def _ddp_worker(rank, world, port, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        pred, gt, valid, bound, category, size = _fixed_data()
        # uneven shards, 7 and 5 pairs, and rank 1 padded with repeats of pairs 0 and 5 (a
        # skipped one) as a DistributedSampler pads: the repeats must not count twice
        parts = [torch.arange(0, 4), torch.arange(4, 7)] if rank == 0 else [torch.arange(7, 12), torch.tensor([0, 5])]
        metric = _metric()
        for ix in parts:
            metric.update(pred[ix], gt[ix], valid[ix], bound[ix], category[ix], {"size": size[ix]}, ids=ix)
        torch.save(metric.compute(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_single_process(tmp_path):
    import torch.multiprocessing as mp

    pred, gt, valid, bound, category, size = _fixed_data()
    single = _metric()
    single.update(pred, gt, valid, bound, category, {"size": size}, ids=torch.arange(len(pred)))
    expected = single.compute()
    # fork on Linux: the workers inherit the imported modules (a spawned worker re-imports
    # torch and lightning, ~10 s each on 2 cores); the workers run single-threaded.
    method = "fork" if sys.platform == "linux" else "spawn"
    ctx = mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False,
                             start_method=method)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.terminate()
            pytest.fail("the two DDP workers did not finish within 120 s")
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-6), key
    assert expected["skipped"] == 2 and expected["pairs"] == 10


def test_a_repeated_pair_id_counts_once():
    pred, gt, valid, bound, category, size = _fixed_data()
    ids = torch.arange(len(pred))
    once, twice = _metric(), _metric()
    once.update(pred, gt, valid, bound, category, {"size": size}, ids=ids)
    twice.update(pred, gt, valid, bound, category, {"size": size}, ids=ids)
    twice.update(pred[:6] + 50, gt[:6], valid[:6], bound[:6], category[:6], {"size": size[:6]}, ids=ids[:6])
    assert twice.compute() == once.compute()
    no_ids = _metric()  # without ids every update counts, as before
    for _ in range(2):
        no_ids.update(pred, gt, valid, bound, category, {"size": size})
    assert no_ids.compute()["pairs"] == 2 * once.compute()["pairs"]


def test_group_labels_name_the_values():
    import torch

    from sosc.metrics import PCK

    m = PCK((0.1,), groups=("size",), group_labels={"size": ["small", "medium", "large"]})
    pred = torch.zeros(2, 1, 2)
    gt = torch.tensor([[[0.0, 0.0]], [[50.0, 0.0]]])
    m.update(pred, gt, torch.ones(2, 1, dtype=torch.bool), torch.tensor([100.0, 100.0]),
             groups={"size": torch.tensor([0, 2])})
    out = m.compute()
    assert out["pck@0.1/size=small"] == 1.0 and out["pck@0.1/size=large"] == 0.0


def test_no_category_gives_no_breakdown():
    import torch

    from sosc.metrics import PCK

    m = PCK((0.1,))
    m.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.ones(1, 2, dtype=torch.bool), torch.tensor([10.0]))
    assert set(m.compute()) == {"pairs", "keypoints", "skipped", "pck@0.1", "pck_kp@0.1"}
