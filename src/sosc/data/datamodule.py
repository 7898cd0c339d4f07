"""The LightningDataModule every benchmark shares: splits, datasets, loaders, skip reports.

Training data resumes exactly: the order of an epoch is a pure function of ``(seed, epoch)``
(:class:`TrainSampler`) and an item's random draws of ``(seed, epoch, index)``
(:func:`sosc.data.dataset.item_seed`). Every checkpoint records the seed, the epoch and how
many of its batches were trained on (:meth:`PairDataModule.state_dict`); Lightning hands that
back (``load_state_dict``) before the training loader is built, and the resumed run skips
exactly those batches. This takes the place of Lightning's stateful-loader mechanism, whose
saved state is dropped when ``configure_optimizers`` reads ``trainer.estimated_stepping_batches``
(Lightning issue #20550), as the module's cosine schedule does.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from sosc.data import index_cache as _index_cache
from sosc.data.augment import Photometric
from sosc.data.dataset import (
    RESAMPLE,
    PairDataset,
    WindowFn,
    collate_pairs,
    validate_records,
    verify_images,
    warn_skips,
)
from sosc.data.download import ArchiveSpec, check_benchmark, ensure_benchmark
from sosc.data.records import PairRecord, SkipReport, empty_split_error
from sosc.geometry import as_size
from sosc.kbc import KBCConfig, kbc_train_windows

#: Lightning stage -> the splits it needs.
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class TrainSampler(DistributedSampler):
    """The training order: shuffled as a pure function of ``(seed, epoch)``, sharded over
    processes, resumable in the middle of an epoch.

    Args:
        dataset: the training set (only its length is used).
        seed: seeds the order (``seed + epoch``, as :class:`~torch.utils.data.DistributedSampler`).
        num_replicas, rank: the processes and this one's rank (1 and 0 without DDP); each
            process takes every ``num_replicas``-th index of the epoch's permutation, padded by
            repeats to equal shards.
        epoch: the epoch the first iteration is for (Lightning calls :meth:`set_epoch` before
            each later epoch).
        skip: indices of ``epoch`` already trained on (a resumed run): its iteration starts
            after them. ``len()`` stays the full shard, as Lightning counts an epoch's batches.

    Yields ``(index, epoch)`` keys: :class:`~sosc.data.dataset.PairDataset` draws an item's
    augmentation from them, so the order and the draws repeat in every process and worker.
    Lightning leaves a :class:`DistributedSampler` in place under DDP.

    >>> s = TrainSampler(range(6), seed=0)
    >>> order = list(s)
    >>> sorted(i for i, _ in order), list(TrainSampler(range(6), seed=0, skip=4)) == order[4:]
    ([0, 1, 2, 3, 4, 5], True)
    """

    def __init__(
        self,
        dataset: Dataset | Sequence,
        *,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        epoch: int = 0,
        skip: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.epoch = int(epoch)
        self.resume_epoch, self.skip = int(epoch), int(skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        indices = list(super().__iter__())
        if epoch == self.resume_epoch:
            indices = indices[self.skip :]
        return iter([(int(i), epoch) for i in indices])


class PairDataModule(L.LightningDataModule):
    """Base class: a subclass only says how to read a split into :class:`PairRecord` s.

    Args:
        root: folder holding the benchmark (either layout a subclass accepts), or its parent;
            a download is extracted into it. Default ``data``.
        input_size: network input side, or ``[S_h, S_w]``; None gives the benchmark's usual
            input (:attr:`default_input_size`: 512 for SPair-71k, 256 otherwise). The model
            reads it from the batches.
        batch_size: pairs per training batch.
        eval_batch_size: pairs per evaluation batch (default: ``batch_size``).
        num_workers: loader processes.
        augment: photometric augmentation of training images.
        strict: raise on a keypoint or object box outside its image (else drop the keypoint,
            or skip the pair, and report).
        max_pairs: use only the first ``max_pairs`` pairs of each split (quick runs).
        predict_split: the split ``sosc predict`` runs on.
        kbc: the KBC options (:class:`sosc.kbc.KBCConfig`); with probability ``kbc.train_p`` a
            training pair is cropped around its ground-truth keypoint boxes
            (:func:`sosc.kbc.kbc_train_windows`). The ``sosc`` CLI links it from ``model.kbc``,
            so that training and evaluation share one KBC configuration. None: never.
        download: fetch and extract the benchmark's archive in ``prepare_data`` when its tree
            is missing; ``False`` never downloads and only explains what to put where.
        url: download from this URL (a mirror) instead of the environment variable named by
            the archive (``SOSC_SPAIR_URL``, ...) or the official URL.
        sha256: expected checksum of the archive (none is published for these benchmarks).
        train_seed: seeds the training order and each training item's augmentation (a pure
            function of seed, epoch and index); None: the run's ``seed_everything`` seed
            (``PL_GLOBAL_SEED``), else 0. A resumed run keeps the seed its checkpoint records.
        verify_images: decode every image of the splits being set up, in full, during set-up
            (a truncated file passes the header checks and would only fail when drawn); with
            ``strict`` a file that does not decode is an error naming it, else its pairs are
            skipped and reported. Costs a few ms per image.
        index_cache: keep each split's validated index (records and skip report) in a cache,
            keyed on the size and modification time of every file its reader reads, so that a
            later set-up of an unchanged tree reads one file (:mod:`sosc.data.index_cache`):
            ``True`` (default) ``$SOSC_CACHE_DIR`` or ``~/.cache/sosc/index``, a folder, or
            ``False``. Benchmarks whose reader does not list its files (:meth:`index_files`) are
            read every time.
        resample: where training windows are resampled (:data:`sosc.data.dataset.RESAMPLE`):
            ``"auto"`` (default) on the device when the trainer runs on an accelerator (the
            workers only decode; the module finishes each batch, :func:`~sosc.data.dataset.finish_batch`),
            else ``"torch"`` in the workers; or ``"torch"``, ``"pil"``, ``"device"``.
            Evaluation splits always resample in the workers with ``"torch"``.
    """

    #: Human-readable benchmark name used in messages.
    name = "pairs"
    #: Input side used when ``input_size`` is None.
    default_input_size: int = 256
    #: Category names, in the order of ``category_id`` (None: ids only).
    categories: Sequence[str] | None = None
    #: Per-pair difficulty flags the items carry (SPair-71k's four), reported by the test.
    difficulty_flags: Sequence[str] = ()
    #: The archive ``prepare_data`` downloads (None: nothing to download).
    archive: ArchiveSpec | None = None

    def __init__(
        self,
        root: str | Path = "data",
        input_size: int | Sequence[int] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        augment: bool = True,
        strict: bool = True,
        max_pairs: int | None = None,
        predict_split: str = "test",
        kbc: KBCConfig | None = None,
        download: bool = True,
        url: str | None = None,
        sha256: str | None = None,
        train_seed: int | None = None,
        verify_images: bool = False,
        index_cache: bool | str | Path = True,
        resample: str = "auto",
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.input_size = as_size(input_size if input_size is not None else self.default_input_size)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.strict = strict
        self.max_pairs = max_pairs
        self.predict_split = predict_split
        self.kbc = kbc
        self.download = download
        self.url = url
        self.sha256 = sha256
        self.train_seed = train_seed
        self.verify_images = verify_images
        if resample != "auto" and resample not in RESAMPLE:
            raise ValueError(f"resample must be 'auto' or one of {RESAMPLE}, got {resample!r}")
        self.index_cache = index_cache
        self.resample = resample
        self.datasets: dict[str, PairDataset] = {}
        self.skipped: dict[str, SkipReport] = {}
        #: ``{"seed", "epoch", "batches"}`` from a checkpoint (:meth:`load_state_dict`), else None.
        self.resume_state: dict[str, int] | None = None

    # -- what a subclass provides ------------------------------------------------------
    def read_split(self, split: str) -> tuple[list[PairRecord], SkipReport]:
        """Read ``split`` (``train``, ``val`` or ``test``) into records, and a report of what was
        left out whose ``split_file`` names the file read (an empty split's error names it)."""
        raise NotImplementedError

    def index_files(self, split: str) -> tuple[list[Path], list[Path]] | None:
        """``(files, folders)``: every file :meth:`read_split` and the checks of ``split`` read (files,
        and folders whose every file counts), for the index cache's signature; None (the
        default): this benchmark's index is not cached."""
        return None

    def find_root(self, root: Path) -> Path:
        """The benchmark's tree under ``root``; raises :class:`DatasetError` naming the paths
        searched when it is not there."""
        raise NotImplementedError

    def extra_help(self) -> str:
        """Instructions added to the missing-data message (files the archive lacks)."""
        return ""

    def prepare_data(self) -> None:
        """Download and extract the archive into ``root`` if the tree is not there (sets no
        attributes; ``download=False`` only checks and explains)."""
        if self.archive is None:
            return
        ensure_benchmark(
            self.archive, self.root, self.find_root, download=self.download, url=self.url,
            sha256=self.sha256, extra_help=self.extra_help(),
        )

    def check_stage(self, stage: str) -> None:
        """Raise when this benchmark cannot run ``stage`` at all (PF-WILLOW has no training
        split), before anything is read or downloaded. The default accepts every stage."""

    def check_data(self, stage: str) -> None:
        """What ``stage`` needs, checked in seconds before any work and before any weights are
        fetched (the ``sosc`` CLI calls it first): the stage is one this benchmark has
        (:meth:`check_stage`), and the benchmark's tree is under ``root``, or ``download`` is on
        and its server answers (:func:`sosc.data.download.check_benchmark`).

        Raises:
            DatasetError: saying which archive to put where (downloads nothing, writes nothing).
            ConfigError: a stage the benchmark does not have.
        """
        self.check_stage(stage)
        if self.archive is None:
            return
        check_benchmark(self.archive, self.root, self.find_root, download=self.download, url=self.url,
                        extra_help=self.extra_help())

    def train_window_fn(self) -> WindowFn | None:
        """Train-time window choice (KBC augmentation) or None for full images."""
        config = self.kbc
        if config is None or config.train_p <= 0:
            return None
        size = self.input_size

        def window_fn(src_kps, trg_kps, valid, src_hw, trg_hw, generator):
            return kbc_train_windows(src_kps, trg_kps, valid, src_hw, trg_hw, size, config, generator)

        return window_fn

    def use_matcher(self, matcher: object) -> None:
        """Resolve ``kbc.zoom_px="auto"`` with the matcher being trained (its ``kbc_zoom_px``,
        :meth:`sosc.kbc.KBCConfig.for_matcher`), so that train-time windows zoom to the scale of
        test-time ones; a training split already set up gets the resolved window choice. The
        LightningModule calls it in ``setup``; without it ``"auto"`` is
        :data:`~sosc.kbc.config.DEFAULT_ZOOM_PX`."""
        if self.kbc is None:
            return
        # the configuration asked for, not one resolved for an earlier matcher: a data module
        # reused for another model resolves "auto" again
        asked, resolved = getattr(self, "_kbc_resolution", (None, None))
        requested = asked if (resolved is not None and self.kbc is resolved) else self.kbc
        self.kbc = requested.for_matcher(matcher)
        self._kbc_resolution = (requested, self.kbc)
        if "train" in self.datasets:
            self.datasets["train"].window_fn = self.train_window_fn()

    def check_overlaps(self, splits: dict[str, list[PairRecord]]) -> None:
        """Hook to report pairs shared between loaded splits (PF-PASCAL has some)."""

    # -- Lightning hooks -----------------------------------------------------------------
    def records(self, split: str) -> list[PairRecord]:
        """The pairs of ``split`` (``predict``: :attr:`predict_split`), read, validated against
        their images and cut to ``max_pairs``; what was left out is warned about and kept in
        :attr:`skipped`.

        Raises:
            DatasetError: no pair is left (an empty split file, or every pair skipped), naming
                the split, its file, what was skipped and what to do.
        """
        name = self.predict_split if split == "predict" else split
        records, report = self.indexed_split(name)
        if not records:
            raise empty_split_error(self.name, name, report, self.extra_help())
        if self.max_pairs is not None:
            records = records[: self.max_pairs]
        if self.verify_images:
            records, undecodable = verify_images(records, strict=self.strict)
            report = report.merge(undecodable)
            if not records:
                raise empty_split_error(self.name, name, report, self.extra_help())
        self.skipped[split] = report
        warn_skips(self.name, name, report)
        return records

    def indexed_split(self, split: str) -> tuple[list[PairRecord], SkipReport]:
        """:meth:`read_split` then :func:`~sosc.data.dataset.validate_records`, through the index
        cache when it is on and the benchmark lists its files (see ``index_cache``)."""
        folder = _index_cache.cache_dir(self.index_cache)
        listed = self.index_files(split) if folder is not None else None
        if listed is None:
            records, report = self.read_split(split)
            records, invalid = validate_records(records, strict=self.strict)
            return records, report.merge(invalid)
        key = {"name": type(self).__name__, "split": split, "root": str(Path(self.root).resolve()),
               "strict": self.strict, "categories": list(self.categories or []),
               "format": _index_cache.FORMAT}
        path = _index_cache.cache_file(folder, key)
        signature = _index_cache.files_signature(*listed)
        cached = _index_cache.load(path, key, signature)
        if cached is not None:
            return cached
        records, report = self.read_split(split)
        records, invalid = validate_records(records, strict=self.strict)
        report = report.merge(invalid)
        _index_cache.store(path, key, signature, (records, report))
        return records, report

    def training_resample(self) -> str:
        """Where the training split resamples its windows: ``resample``, with ``"auto"`` resolved by
        the trainer's device (an accelerator: ``"device"``; the CPU or no trainer: ``"torch"``)."""
        if self.resample != "auto":
            return self.resample
        trainer = self.trainer
        device = getattr(getattr(trainer, "strategy", None), "root_device", None) if trainer is not None else None
        return "device" if device is not None and device.type != "cpu" else "torch"

    def setup(self, stage: str | None = None) -> None:
        wanted = STAGE_SPLITS.get(stage or "fit", ("train", "val", "test"))
        loaded = {split: self.records(split) for split in wanted if split not in self.datasets}
        self.check_overlaps(loaded)
        for split, records in loaded.items():
            train = split == "train"
            self.datasets[split] = PairDataset(
                records,
                self.input_size,
                keep_original=not train,
                augment=Photometric() if (train and self.augment) else None,
                window_fn=self.train_window_fn() if train else None,
                resample=self.training_resample() if train else "torch",
            )

    # -- resuming ------------------------------------------------------------------------
    def training_seed(self) -> int:
        """The seed of the training order and augmentation: a checkpoint's when resuming, else
        ``train_seed``, else the run's ``seed_everything`` seed (``PL_GLOBAL_SEED``), else 0."""
        if self.resume_state is not None:
            return int(self.resume_state["seed"])
        if self.train_seed is not None:
            return int(self.train_seed)
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint records of the training data (Lightning calls this on every save):
        ``{"train": {"seed", "epoch", "batches"}}``, the batches of ``epoch`` already trained
        on (a finished epoch is recorded as the next one, 0 batches). Empty outside training."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit" or "train" not in self.datasets:
            return {}
        epoch = int(trainer.current_epoch)
        batches = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        if batches >= trainer.num_training_batches:
            epoch, batches = epoch + 1, 0
        return {"train": {"seed": self.training_seed(), "epoch": epoch, "batches": batches}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take a checkpoint's record (Lightning calls this before the training loader is built)."""
        train = state_dict.get("train")
        self.resume_state = {k: int(train[k]) for k in ("seed", "epoch", "batches")} if train else None
        if train:  # Lightning's warning assumes a loader with state_dict(); this one resumes exactly
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")

    # -- loaders -------------------------------------------------------------------------
    def _loader(self, split: str, *, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test", "predict": "predict"}[split])
        dataset = self.datasets[split]
        sampler = None
        if train:
            trainer = self.trainer
            resume = self.resume_state or {"epoch": 0, "batches": 0}
            dataset.seed = self.training_seed()
            sampler = TrainSampler(
                dataset, seed=dataset.seed, epoch=resume["epoch"], skip=resume["batches"] * self.batch_size,
                num_replicas=trainer.world_size if trainer is not None else 1,
                rank=trainer.global_rank if trainer is not None else 0,
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            collate_fn=collate_pairs,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Training batches in :class:`TrainSampler`'s order (resumed mid-epoch after a checkpoint)."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", train=False)
