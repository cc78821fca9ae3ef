"""The training batch of any step: a pure function of (seed, step), sliced by rank.

A resumed run, or one split over N processes, sees exactly the faces, flips and target
emotions an uninterrupted single-process run would.
"""

from __future__ import annotations

import torch

from ccyclegan.core.config import ConfigError
from ccyclegan.core.data import NUM_CLASSES, FaceData, normalize, rng_for


class Batches:
    """Deterministic batches for any step: epoch permutation from (seed, epoch), flips and
    targets from (seed, step). Each rank takes its slice of the global batch.

    Under torchrun this plays the role of DistributedSampler(shuffle=True, seed=seed,
    drop_last=True) with set_epoch(epoch): every rank draws the same permutation for the epoch
    and keeps a disjoint shard, so ranks see distinct faces and a new split every epoch. We
    do it ourselves because a step-indexed global batch gives two guarantees the sampler
    does not: (1) rank r's rows are rows [r*B, (r+1)*B) of the batch a single process with
    batch N*B would draw at that step (the sampler interleaves indices rank::N and pads), so
    a run does not depend on how the global batch is split, which is what the equivalence
    test checks; (2) any step can be drawn directly, so --resume restarts mid-epoch without
    replaying a loader. The tail of an epoch that does not fill a global batch is dropped (a
    different tail each epoch).
    """

    def __init__(self, data: FaceData, batch_size: int, seed: int, flip: bool, targets: str,
                 device: torch.device, rank: int = 0, world: int = 1):
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size, self.seed, self.flip, self.targets = batch_size, seed, flip, targets
        self.device, self.rank, self.world = device, rank, world
        self.global_batch = batch_size * world
        self.steps_per_epoch = len(data) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(f"config field 'batch_size': {len(data)} training images are "
                              f"fewer than one global batch of {self.global_batch}")
        self._perm_epoch, self._perm = -1, None

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x in [-1,1], labels, index into x per translation, target labels)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(len(self.labels), generator=rng_for(self.seed, 1, epoch))
            self._perm_epoch = epoch
        g = rng_for(self.seed, 2, step)
        gb = self.global_batch
        flips = torch.rand(gb, generator=g) < 0.5
        offsets = torch.randint(1, NUM_CLASSES, (gb,), generator=g)
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        idx = self._perm[i * gb:(i + 1) * gb][lo:hi].to(self.device)
        x = normalize(self.images[idx])
        if self.flip:
            x = torch.where(flips[lo:hi].to(self.device)[:, None, None, None], x.flip(-1), x)
        y = self.labels[idx]
        if self.targets == "all":  # every face to each of the other 6 emotions
            k = torch.arange(1, NUM_CLASSES, device=self.device)
            src = torch.arange(len(y), device=self.device).repeat_interleave(NUM_CLASSES - 1)
            y_t = (y[src] + k.repeat(len(y))) % NUM_CLASSES
        else:  # one uniformly random other emotion per face
            src = torch.arange(len(y), device=self.device)
            y_t = (y + offsets[lo:hi].to(self.device)) % NUM_CLASSES
        return x, y, src, y_t
