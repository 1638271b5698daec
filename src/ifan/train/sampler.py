"""A resumable, distributed batch sampler: the data order is a pure function of (seed, step).

The training stream is the concatenation of per-epoch permutations of the dataset; step ``s``
takes global positions ``[s*B, (s+1)*B)``. Under ``world_size`` processes each rank takes its
contiguous ``B / world_size`` share of every global batch, so K processes see exactly the
samples one process would see with the same global batch. Each position also fixes the
sample's augmentation seed. Resuming at step ``s`` therefore replays the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from ifan.data.datasets import index_seed


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for steps ``start_step .. total_steps-1``, this rank's list of ``(index, sample_seed)``.

    Args:
        num_samples: dataset size.
        global_batch: samples per step over all ranks.
        seed: base seed of the order and the augmentations.
        start_step, total_steps: the range of steps to produce.
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, num_samples: int, global_batch: int, seed: int, start_step: int, total_steps: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if num_samples < 1:
            raise ValueError("the training set is empty")
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by the {world_size} processes")
        self.n, self.batch, self.seed = num_samples, global_batch, seed
        self.start, self.total, self.rank, self.world = start_step, total_steps, rank, world_size
        self._perm_epoch, self._perm = -1, np.arange(0)

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.n)
            self._perm_epoch = epoch
        return int(self._perm[offset])

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        """This rank's samples of global step ``step``."""
        local = self.batch // self.world
        first = step * self.batch + self.rank * local
        return [(self._index(p), index_seed(self.seed, p)) for p in range(first, first + local)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            yield self.batch_at(step)

    def __len__(self) -> int:
        return max(self.total - self.start, 0)
