"""Batches without two pairs of one group (image). A module of its own because it imports
sentence-transformers at module level (the trainer pickles the sampler factory with its arguments)."""
from __future__ import annotations

import functools
import math
import random
from typing import Callable, Sequence

from sentence_transformers.base.sampler import DefaultBatchSampler

from vfr.retrieve.calibrate.pairs import group_free_batches


class GroupBatchSampler(DefaultBatchSampler):
    """Shuffled batches in which every pair comes from a different group.

    Two captions of one image in a batch would each be scored as the other's negative (a false negative);
    sentence-transformers' NO_DUPLICATES only catches identical texts. Reshuffled each epoch from seed+epoch.
    """

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None,
                 generator=None, seed: int = 0, *, groups: Sequence[str]) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        if len(dataset) != len(groups):
            raise ValueError(f"group sampler: {len(dataset)} rows but {len(groups)} groups")
        self.groups = list(groups)

    def __len__(self) -> int:
        n = len(self.groups)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        order = list(range(len(self.groups)))
        random.Random(self.seed + self.epoch).shuffle(order)
        batches = group_free_batches(order, self.batch_size, key=self.groups.__getitem__)
        yield from [b for b in batches if len(b) > 1][: len(self)]


def group_batch_sampler(groups: Sequence[str]) -> Callable[..., GroupBatchSampler]:
    """The factory `SentenceTransformerTrainingArguments(batch_sampler=...)` takes (picklable)."""
    return functools.partial(GroupBatchSampler, groups=list(groups))
