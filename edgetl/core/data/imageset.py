"""A list of labelled images read lazily, by key, through a Loader (files, tar members,
digits' arrays); crops optionally remembered (CropMemo) so a search decodes each once."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from edgetl.core.data.splitting import stratified_sample
from edgetl.core.images import read_image
from edgetl.core.preprocess import Preprocess


class ImageSet:
    """A list of labelled images, addressable by index, loaded lazily."""

    def __init__(
        self,
        keys: list[str],
        labels: np.ndarray,
        loader: Loader,
        digests: list[bytes] | None = None,
    ):
        self.keys = keys
        self.labels = np.asarray(labels, dtype=np.int64)
        self._loader = loader
        # sha256 of each image's content (file bytes; digits: pixels), when known: tells the
        # same picture under another name or folder.
        self.digests = digests

    def __len__(self) -> int:
        return len(self.keys)

    def image(self, index: int) -> Image.Image:
        return self._loader(self.keys[index])

    def crop(self, index: int, preprocess: Preprocess) -> np.ndarray:
        """Image `index` resized and cropped, uint8 CHW (from the loader's memo when set)."""
        memo = self._loader.memo
        if memo is None:
            return preprocess.crop(self.image(index))
        return memo.crop(self.keys[index], preprocess, lambda: self.image(index))

    def preprocessed(self, index: int, preprocess: Preprocess) -> np.ndarray:
        """Image `index` as the model's float32 input: `preprocess(image)`, by way of the memo."""
        return preprocess.normalize(self.crop(index, preprocess))

    def remember_crops(self, limit_bytes: int) -> None:
        """Keep the crops made from now on (up to `limit_bytes`), for every set of this loader."""
        if self._loader.memo is None:
            self._loader.memo = CropMemo(limit_bytes)

    def subset(self, indices: np.ndarray | list[int] | range) -> ImageSet:
        indices = [int(i) for i in indices]
        digests = None if self.digests is None else [self.digests[i] for i in indices]
        return ImageSet(
            [self.keys[i] for i in indices], self.labels[indices], self._loader, digests
        )

    def first_of_each(self, digests: set[bytes]) -> ImageSet:
        """The first image of each content in `digests` (an image set with known digests)."""
        assert self.digests is not None
        seen: set[bytes] = set()
        picked = []
        for index, digest in enumerate(self.digests):
            if digest in digests and digest not in seen:
                seen.add(digest)
                picked.append(index)
        return self.subset(picked)

    @classmethod
    def joined(cls, parts: list[ImageSet]) -> ImageSet:
        """One set of several read by the same loader (the roles of one dataset)."""
        loader = parts[0]._loader
        assert all(part._loader is loader for part in parts)
        digests = [d for part in parts for d in part.digests or []]
        known = all(part.digests is not None for part in parts)
        return cls(
            [key for part in parts for key in part.keys],
            np.concatenate([part.labels for part in parts]),
            loader,
            digests if known else None,
        )

    def sample(self, limit: int | None, seed: int) -> ImageSet:
        """At most `limit` images, every class in proportion (seeded); all when limit is None."""
        if limit is None or limit >= len(self):
            return self
        return self.subset(stratified_sample(self.labels, limit, seed))

    def batches(
        self, preprocess: Preprocess, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            images = np.stack([self.preprocessed(i, preprocess) for i in range(start, stop)])
            yield images, self.labels[start:stop]

    def arrays(self, preprocess: Preprocess) -> np.ndarray:
        """Every image preprocessed, (N, 3, S, S) float32."""
        if not len(self):
            size = preprocess.size
            return np.zeros((0, 3, size, size), np.float32)
        return np.concatenate([batch for batch, _ in self.batches(preprocess, 64)])

    def crops(self, preprocess: Preprocess) -> np.ndarray:
        """Every image resized and cropped, (N, 3, S, S) uint8 (not normalized)."""
        return np.stack([self.crop(i, preprocess) for i in range(len(self))])

    def key_hash(self) -> str:
        """Which images, in which order: recorded in the run so a split can be checked later."""
        return hashlib.sha256("\n".join(self.keys).encode()).hexdigest()


class Loader:
    """Reads one image by key. `memo`, when a caller sets one (the search), keeps the crops
    it made, shared by every set this loader reads for."""

    memo: CropMemo | None = None

    def __call__(self, key: str) -> Image.Image:  # pragma: no cover - interface
        raise NotImplementedError


class CropMemo:
    """Crops already made, by (image, preprocessing), up to `limit` bytes (then new crops are
    made and not kept). Every later stage of a search measures the same val and test images
    at the same sizes: remembered, each is decoded once per size, whatever the number of
    candidates (uint8 at 224 px: 150 kB an image, 3,300 images 0.5 GB)."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.used = 0
        self.crops: dict[tuple[str, Preprocess], np.ndarray] = {}
        self.lock = threading.Lock()  # feature extraction decodes on a thread pool

    def crop(
        self, key: str, preprocess: Preprocess, image: Callable[[], Image.Image]
    ) -> np.ndarray:
        found = self.crops.get((key, preprocess))
        if found is not None:
            return found
        made = preprocess.crop(image())
        with self.lock:
            if self.used + made.nbytes <= self.limit:
                self.crops[(key, preprocess)] = made
                self.used += made.nbytes
        return made


class FileLoader(Loader):
    def __init__(self, root: Path):
        self.root = root

    def __call__(self, key: str) -> Image.Image:
        return read_image(self.root / key)
