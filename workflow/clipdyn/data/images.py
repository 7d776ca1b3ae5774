"""Open one image, from a plain file or from a member of a tar shard, as RGB.

Every image the workflow decodes goes through :func:`open_image`, so the rules
are in one place:

* a missing, corrupt or truncated file raises :class:`BadImageError` naming the
  file, the tar member and the reason; nothing is silently padded or skipped.
  Pillow refuses truncated files unless ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
  was switched on by some other code in the process; this module never switches
  it on and warns once if it finds it on;
* the result is a fully decoded ``PIL.Image`` in mode ``RGB`` (16-bit and 32-bit
  grey images are scaled to 8 bits, palette and alpha images are flattened by
  Pillow's ``convert("RGB")``). EXIF orientation is not applied, as in
  torchvision's and open_clip's loaders.

Tar shards (the clip-benchmark webdataset layout) are kept open in a small
per-process LRU cache of handles, each with a name -> member index, so reading
10,000 members of one shard does not reopen it or rescan it 10,000 times.

Thread safety: a cached ``TarFile`` shares one file offset, so each read of a
member's bytes holds that handle's lock; decoding happens outside the lock and
runs in parallel. After ``fork`` a child process does not reuse its parent's
handles (the cache is keyed by process id).
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
import warnings
from collections import OrderedDict
from typing import Dict, Tuple

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = ["open_image", "read_bytes", "BadImageError", "close_tar_cache", "TAR_CACHE_SIZE"]

#: how many tar shards each process keeps open
TAR_CACHE_SIZE = 8


class BadImageError(OSError):
    """An image that cannot be read or decoded completely."""

    def __init__(self, path, member: str = "", reason: str = ""):
        self.path = str(path)
        self.member = member or ""
        self.reason = reason
        where = f"{self.path}[{self.member}]" if self.member else self.path
        super().__init__(f"bad image {where}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (BadImageError, (self.path, self.member, self.reason))


class _Shard:
    def __init__(self, path: str):
        self.tar = tarfile.open(path, "r:*")
        self.index: Dict[str, tarfile.TarInfo] = {m.name: m for m in self.tar.getmembers() if m.isfile()}
        self.lock = threading.Lock()
        self.closed = False

    def close(self):
        with self.lock:  # never close under a reader's feet
            self.closed = True
            self.tar.close()


_cache: "OrderedDict[Tuple[int, str], _Shard]" = OrderedDict()
_cache_lock = threading.Lock()
_warned_truncated_flag = False


def close_tar_cache() -> None:
    """Close every cached tar handle of this process."""
    with _cache_lock:
        for key, shard in list(_cache.items()):
            if key[0] == os.getpid():
                shard.close()
        _cache.clear()


def _shard(path: str) -> _Shard:
    key = (os.getpid(), os.path.abspath(path))
    with _cache_lock:
        shard = _cache.get(key)
        if shard is not None:
            _cache.move_to_end(key)
            return shard
    shard = _Shard(path)  # opened outside the lock: listing a big shard takes a while
    with _cache_lock:
        existing = _cache.get(key)
        if existing is not None:
            shard.tar.close()
            return existing
        _cache[key] = shard
        while len(_cache) > TAR_CACHE_SIZE:
            old_key, old = _cache.popitem(last=False)
            if old_key[0] == os.getpid():
                old.close()
        return shard


def read_bytes(path, member: str = "") -> bytes:
    """The raw bytes of a plain file, or of ``member`` inside the tar ``path``.

    Raises :class:`BadImageError` if the file or member is missing or unreadable.
    """
    path = os.fspath(path)
    if not member:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise BadImageError(path, "", f"cannot read file: {e.strerror or e}") from e
    while True:
        try:
            shard = _shard(path)
        except FileNotFoundError as e:
            raise BadImageError(path, member, "tar shard does not exist") from e
        except (OSError, tarfile.TarError) as e:
            raise BadImageError(path, member, f"cannot open tar shard: {e}") from e
        info = shard.index.get(member)
        if info is None:
            raise BadImageError(path, member, "no such member in the tar shard")
        try:
            with shard.lock:
                if shard.closed:  # evicted by another thread in between: open it again
                    continue
                f = shard.tar.extractfile(info)
                data = f.read() if f is not None else None
        except (OSError, tarfile.TarError, ValueError) as e:
            raise BadImageError(path, member, f"cannot read tar member: {e}") from e
        break
    if data is None or len(data) != info.size:
        raise BadImageError(path, member, "tar member is truncated")
    return data


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img).astype(np.uint32) >> 8
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Flatten on black, as convert("RGB") does, but without Pillow's warning.
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def open_image(path, member: str = "") -> Image.Image:
    """Decode the image at ``path`` (or tar ``member`` of it) into an RGB ``PIL.Image``.

    ``member`` is "" for a plain file. Raises :class:`BadImageError(path, member,
    reason)` when the file or member is missing, unreadable, not an image,
    corrupt or truncated. The returned image is fully loaded (no open file
    handle behind it).
    """
    global _warned_truncated_flag
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated_flag:
        _warned_truncated_flag = True
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process (set by other code); "
            "truncated images may then decode without an error", RuntimeWarning, stacklevel=2)
    data = read_bytes(path, member)
    if not data:
        raise BadImageError(path, member, "empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            out = _to_rgb(img)
            if out is img:  # RGB already: detach from the file before it closes
                out = img.copy()
    except UnidentifiedImageError as e:
        raise BadImageError(path, member, "not an image Pillow can identify") from e
    except Image.DecompressionBombError as e:
        raise BadImageError(path, member, f"decompression bomb: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncation as OSError("image file is truncated ...") and
        # some corrupt streams as SyntaxError/ValueError.
        raise BadImageError(path, member, f"corrupt or truncated image: {e}") from e
    return out
