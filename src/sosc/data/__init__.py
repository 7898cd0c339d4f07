"""Benchmarks as LightningDataModules, all producing :class:`sosc.types.PairItem` batches."""

from sosc.data.datamodule import PairDataModule, TrainSampler
from sosc.data.dataset import PairDataset, collate_pairs, finish_batch
from sosc.data.download import ArchiveSpec, DownloadError, ensure_benchmark, extract, fetch
from sosc.data.pfpascal import PFPASCAL_CATEGORIES, PFPascalDataModule, read_pfpascal
from sosc.data.pfwillow import PFWILLOW_CATEGORIES, PFWillowDataModule, read_pfwillow
from sosc.data.real_semantic_module import RealSemanticDataModule
from sosc.data.records import PairRecord, SkipReport, pck_bound, size_class
from sosc.data.spair import SPAIR_CATEGORIES, SPair71kDataModule, read_spair
from sosc.data.synthetic_module import SyntheticDataModule

__all__ = [
    "PFPASCAL_CATEGORIES",
    "PFWILLOW_CATEGORIES",
    "SPAIR_CATEGORIES",
    "ArchiveSpec",
    "DownloadError",
    "PFPascalDataModule",
    "PFWillowDataModule",
    "PairDataModule",
    "PairDataset",
    "PairRecord",
    "RealSemanticDataModule",
    "SPair71kDataModule",
    "SkipReport",
    "SyntheticDataModule",
    "TrainSampler",
    "collate_pairs",
    "ensure_benchmark",
    "extract",
    "fetch",
    "finish_batch",
    "pck_bound",
    "read_pfpascal",
    "read_pfwillow",
    "read_spair",
    "size_class",
]
