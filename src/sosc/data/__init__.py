"""Benchmarks as LightningDataModules, all producing :class:`sosc.types.PairItem` batches."""

from sosc.data.datamodule import PairDataModule
from sosc.data.dataset import PairDataset, SkipReport, collate_pairs
from sosc.data.records import PairRecord, pck_bound, size_class
from sosc.data.spair import SPair71kDataModule, read_spair
from sosc.data.synthetic_module import SyntheticDataModule

__all__ = [
    "PairDataModule",
    "PairDataset",
    "PairRecord",
    "SPair71kDataModule",
    "SkipReport",
    "SyntheticDataModule",
    "collate_pairs",
    "pck_bound",
    "read_spair",
    "size_class",
]
