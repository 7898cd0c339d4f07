"""The LightningDataModule every benchmark shares: splits, datasets, loaders, skip reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from sosc.data.augment import Photometric
from sosc.data.dataset import (
    PairDataset,
    WindowFn,
    collate_pairs,
    validate_records,
    warn_skips,
)
from sosc.data.download import ArchiveSpec, ensure_benchmark
from sosc.data.records import PairRecord, SkipReport, empty_split_error
from sosc.geometry import as_size
from sosc.kbc import KBCConfig, kbc_train_windows

#: Lightning stage -> the splits it needs.
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


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
        self.datasets: dict[str, PairDataset] = {}
        self.skipped: dict[str, SkipReport] = {}

    # -- what a subclass provides ------------------------------------------------------
    def read_split(self, split: str) -> tuple[list[PairRecord], SkipReport]:
        """Read ``split`` (``train``, ``val`` or ``test``) into records, and a report of what was
        left out whose ``split_file`` names the file read (an empty split's error names it)."""
        raise NotImplementedError

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

    def train_window_fn(self) -> WindowFn | None:
        """Train-time window choice (KBC augmentation) or None for full images."""
        config = self.kbc
        if config is None or config.train_p <= 0:
            return None
        size = self.input_size

        def window_fn(src_kps, trg_kps, valid, src_hw, trg_hw, generator):
            return kbc_train_windows(src_kps, trg_kps, valid, src_hw, trg_hw, size, config, generator)

        return window_fn

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
        records, report = self.read_split(name)
        records, invalid = validate_records(records, strict=self.strict)
        report = report.merge(invalid)
        if not records:
            raise empty_split_error(self.name, name, report, self.extra_help())
        if self.max_pairs is not None:
            records = records[: self.max_pairs]
        self.skipped[split] = report
        warn_skips(self.name, name, report)
        return records

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
            )

    def _loader(self, split: str, *, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test", "predict": "predict"}[split])
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=False,
            num_workers=self.num_workers,
            collate_fn=collate_pairs,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", train=False)
