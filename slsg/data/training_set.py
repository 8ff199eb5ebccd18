"""The torch dataset the trainer draws (good, synthetic anomaly, mask) triples from.

Determinism: sample k's randomness comes only from SeedSequence(seed, k) — never from worker state —
so any number of DataLoader workers gives the same batches. k is a global draw index: k = epoch·n + i
(`set_epoch`); indices may exceed n (e.g. from `StepSampler`, which counts draws forever and can
start at `step·batch` to resume). The image used by draw k is a seeded permutation of the n images per
pass, so every pass visits every image once in a new order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edge_runtime.preprocess import check_size, prepare
from slsg.data.augment import color_jitter
from slsg.data.foreground import ProductProfile, foreground_mask, object_region, turn
from slsg.data.presets import Preset, preset_for
from slsg.data.synthesis import synthesize
from slsg.data.textures import TextureSource


def sample_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


class SynthesisDataset(Dataset):
    """Items are `(good, augmented, mask)`: good and augmented are uint8 BGR H×W×3 torch tensors, NOT
    normalised (the model side applies `slsg.model.preprocess`); mask is float32 1×H×W in {0, 1}.

    `images` are uint8 BGR arrays of any size; they are `prepare`d to `size` ((H, W) or N) once and kept in RAM.
    `profile` (what the good images say about the product, `slsg.data.foreground`): on an object, anomalies go on
    the object; on a part that turns, every good image is turned by a random angle first. None: as photographed,
    anomalies anywhere (the reference).
    """

    def __init__(self, images: Sequence[np.ndarray], preset: Preset | str, size: int | tuple[int, int],
                 seed: int = 0, texture_dir: Path | None = None, color_jitter: tuple[float, float] = (0.1, 0.1),
                 fix_bugs: bool = False, profile: ProductProfile | None = None):
        size = check_size(size)
        if not len(images):
            raise ValueError("no training images")
        self.images = [prepare(im, size) for im in images]
        self.profile = profile
        self.regions = ([object_region(foreground_mask(im)) for im in self.images]
                        if profile is not None and profile.object else [None] * len(self.images))
        self.preset = preset_for(preset) if isinstance(preset, str) else preset
        self.size = size
        self.seed = int(seed)
        self.textures = TextureSource(size, texture_dir)
        self.jitter = color_jitter
        self.fix_bugs = fix_bugs
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Index i then means draw epoch·n + i (set it before creating the DataLoader iterator)."""
        self.epoch = int(epoch)

    def image_index(self, k: int) -> int:
        n = len(self.images)
        order = np.random.default_rng(np.random.SeedSequence([self.seed, k // n, 1])).permutation(n)
        return int(order[k % n])

    def draw(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Numpy triple for global draw k: (good uint8 BGR, augmented uint8 BGR, mask bool)."""
        rng = sample_rng(self.seed, k)
        index = self.image_index(k)
        good, region = self.images[index], self.regions[index]
        if self.profile is not None and self.profile.moves:
            good, region = turn(good, region, float(rng.uniform(0.0, 360.0)))
        b, s = self.jitter
        if b > 0 or s > 0:
            good = color_jitter(good, rng, brightness=b, saturation=s)
        # "another good image" as the logical source means another one: itself would paste (almost) itself
        others = [im for j, im in enumerate(self.images) if j != index] or self.images
        out = synthesize(good, self.preset, rng, others, self.textures, self.fix_bugs, region)
        return good, out.image, out.mask

    def __getitem__(self, i: int):
        good, aug, mask = self.draw(self.epoch * len(self.images) + int(i))
        return (torch.from_numpy(np.ascontiguousarray(good)), torch.from_numpy(np.ascontiguousarray(aug)),
                torch.from_numpy(mask.astype(np.float32))[None])


class StepSampler(Sampler):
    """start, start+1, ... for ever: each index is a fresh draw; resume with start = steps_done·batch."""

    def __init__(self, start: int = 0):
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        k = self.start
        while True:
            yield k
            k += 1
