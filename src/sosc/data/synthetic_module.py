"""The offline default benchmark: synthetic small-object pairs in the SPair-71k layout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sosc.data.records import DIFFICULTY_FLAGS
from sosc.data.spair import SPair71kDataModule


class SyntheticDataModule(SPair71kDataModule):
    """Synthetic small-object correspondence, generated on first use and read as SPair-71k.

    ``prepare_data`` generates the set into ``root`` (seeded: the same seed gives the same
    bytes) unless a complete set with the same parameters is already there; see
    :func:`sosc.data.synthetic.generate_synthetic`. Pairs carry SPair-71k's four difficulty
    flags and PCK uses the target object box, as on SPair-71k.

    Args:
        root: where the set lives (default ``data/synthetic``).
        seed, n_train, n_val, n_test: generator settings.
        gen_workers: processes used to generate.
        Other arguments: see :class:`sosc.data.datamodule.PairDataModule`.
    """

    name = "synthetic"
    difficulty_flags: Sequence[str] = DIFFICULTY_FLAGS

    def __init__(
        self,
        root: str | Path = "data/synthetic",
        img_size: int | Sequence[int] = 256,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        augment: bool = True,
        strict: bool = True,
        max_pairs: int | None = None,
        predict_split: str = "test",
        kbc_train: dict[str, float] | None = None,
        seed: int = 0,
        n_train: int = 3000,
        n_val: int = 300,
        n_test: int = 300,
        gen_workers: int = 2,
    ) -> None:
        super().__init__(
            root, img_size, batch_size, eval_batch_size, num_workers, augment, strict, max_pairs,
            predict_split, kbc_train,
        )
        from sosc.data.synthetic import CATEGORIES

        self.categories = tuple(CATEGORIES)
        self.seed, self.n_train, self.n_val, self.n_test = seed, n_train, n_val, n_test
        self.gen_workers = gen_workers

    def prepare_data(self) -> None:
        from sosc.data.synthetic import generate_synthetic

        generate_synthetic(
            self.root, seed=self.seed, n_train=self.n_train, n_val=self.n_val, n_test=self.n_test,
            num_workers=self.gen_workers, progress=True,
        )
