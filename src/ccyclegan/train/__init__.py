"""Training CCycleGAN: the loop, its batches and what a run writes. Stands on core and the
classifier (the frozen loss)."""

from ccyclegan.train.loop import train

__all__ = ["train"]
