"""Batches without two pairs of one group (image), and without a pair whose mined negative is another pair's
positive. A module of its own because it imports sentence-transformers at module level (the trainer pickles
the sampler factory with its arguments)."""
from __future__ import annotations

import functools
import math
import random
from typing import Callable, Sequence

from sentence_transformers.base.sampler import DefaultBatchSampler

from vfr.retrieve.calibrate.pairs import group_free_batches


class GroupBatchSampler(DefaultBatchSampler):
    """Shuffled batches in which every pair comes from a different group, and no pair's hard negative is the
    positive of another pair in the batch.

    Two captions of one image in a batch would each be scored as the other's negative (a false negative), and
    so would a pair whose image's description is another pair's mined negative: the loss scores every query
    against every candidate column, so that query would meet its own positive as a negative.
    sentence-transformers' NO_DUPLICATES only catches identical texts within one column kind. Reshuffled each
    epoch from seed+epoch.
    """

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None,
                 generator=None, seed: int = 0, *, groups: Sequence[str],
                 negative_groups: Sequence[frozenset[str]] | None = None) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        if len(dataset) != len(groups):
            raise ValueError(f"group sampler: {len(dataset)} rows but {len(groups)} groups")
        self.groups = list(groups)
        self.negative_groups = list(negative_groups) if negative_groups is not None else None
        if self.negative_groups is not None and len(self.negative_groups) != len(self.groups):
            raise ValueError(f"group sampler: {len(self.groups)} groups but {len(self.negative_groups)} negative groups")

    def __len__(self) -> int:
        n = len(self.groups)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        order = list(range(len(self.groups)))
        random.Random(self.seed + self.epoch).shuffle(order)
        avoid = self.negative_groups.__getitem__ if self.negative_groups else None
        batches = group_free_batches(order, self.batch_size, key=self.groups.__getitem__, avoid=avoid)
        yield from [b for b in batches if len(b) > 1][: len(self)]


def group_batch_sampler(groups: Sequence[str], negative_groups: Sequence[frozenset[str]] | None = None
                        ) -> Callable[..., GroupBatchSampler]:
    """The factory `SentenceTransformerTrainingArguments(batch_sampler=...)` takes (picklable)."""
    return functools.partial(GroupBatchSampler, groups=list(groups),
                             negative_groups=list(negative_groups) if negative_groups is not None else None)
