"""clipdyn.data.images.open_image: plain files and tar members, RGB output, clear failures."""

import io
import tarfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from clipdyn.data import images
from clipdyn.data.images import BadImageError, open_image


def _rgb(seed=0, h=16, w=12):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encode(arr, fmt, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _fresh_cache():
    images.close_tar_cache()
    yield
    images.close_tar_cache()


def test_png_round_trip_exact(tmp_path):
    arr = _rgb()
    p = tmp_path / "a.png"
    p.write_bytes(_encode(arr, "PNG"))
    img = open_image(p)
    assert img.mode == "RGB" and img.size == (12, 16)
    np.testing.assert_array_equal(np.asarray(img), arr)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA"])
def test_other_modes_become_rgb(tmp_path, mode):
    base = Image.fromarray(_rgb())
    if mode == "I;16":
        img = Image.fromarray((np.arange(16 * 12, dtype=np.uint16).reshape(16, 12) * 300).astype(np.uint16))
        assert img.mode.startswith("I;16")
    else:
        img = base.convert(mode)
    p = tmp_path / ("a.tif" if mode == "CMYK" else "a.png")
    img.save(p)
    out = open_image(p)
    assert out.mode == "RGB" and out.size == (12, 16)
    if mode == "I;16":
        a = np.asarray(out)[..., 0].astype(int)
        expected = (np.asarray(img).astype(np.uint32) >> 8).astype(int)
        np.testing.assert_array_equal(a, expected)  # scaled to 8 bits, not clipped to white


def test_jpeg_and_bmp(tmp_path):
    arr = _rgb()
    (tmp_path / "a.jpg").write_bytes(_encode(arr, "JPEG", quality=95))
    (tmp_path / "I01.BMP").write_bytes(_encode(arr, "BMP"))
    assert open_image(tmp_path / "a.jpg").size == (12, 16)
    np.testing.assert_array_equal(np.asarray(open_image(tmp_path / "I01.BMP")), arr)


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError) as err:
        open_image(tmp_path / "nope.png")
    assert err.value.path.endswith("nope.png") and err.value.member == ""
    assert "nope.png" in str(err.value)


def test_not_an_image_and_empty(tmp_path):
    (tmp_path / "a.png").write_bytes(b"hello, not a png")
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(BadImageError, match="identify"):
        open_image(tmp_path / "a.png")
    with pytest.raises(BadImageError, match="empty"):
        open_image(tmp_path / "b.png")


@pytest.mark.parametrize("fmt,cut", [("PNG", 0.6), ("JPEG", 0.5)])
def test_truncated_images_fail_not_padded(tmp_path, fmt, cut):
    arr = _rgb(h=64, w=64)
    data = _encode(arr, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    p = tmp_path / f"t.{fmt.lower()}"
    p.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(BadImageError, match="truncated|corrupt") as err:
        open_image(p)
    assert err.value.reason


def _shard(path, members):
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_tar_members(tmp_path):
    a, b = _rgb(1), _rgb(2)
    shard = _shard(tmp_path / "0.tar", [("s0000000.webp", _encode(a, "WEBP", lossless=True)),
                                        ("s0000000.cls", b"3"),
                                        ("s0000001.png", _encode(b, "PNG"))])
    np.testing.assert_array_equal(np.asarray(open_image(shard, "s0000000.webp")), a)
    np.testing.assert_array_equal(np.asarray(open_image(str(shard), "s0000001.png")), b)
    with pytest.raises(BadImageError, match="no such member") as err:
        open_image(shard, "s0000009.png")
    assert err.value.member == "s0000009.png"
    with pytest.raises(BadImageError, match="identify"):
        open_image(shard, "s0000000.cls")
    with pytest.raises(BadImageError, match="does not exist"):
        open_image(tmp_path / "missing.tar", "x.png")


def test_truncated_tar_member(tmp_path):
    data = _encode(_rgb(h=64, w=64), "PNG")
    shard = _shard(tmp_path / "0.tar", [("a.png", data)])
    raw = shard.read_bytes()
    shard.write_bytes(raw[: 512 + len(data) // 2])  # header + half the member
    with pytest.raises(BadImageError):
        open_image(shard, "a.png")


def test_tar_cache_eviction_and_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "TAR_CACHE_SIZE", 2)
    arrays, shards = {}, []
    for s in range(4):
        members = []
        for k in range(10):
            arr = _rgb(100 * s + k, 8, 8)
            arrays[(s, f"s{k:07d}.png")] = arr
            members.append((f"s{k:07d}.png", _encode(arr, "PNG")))
        shards.append(_shard(tmp_path / f"{s}.tar", members))
    keys = list(arrays) * 3

    def check(key):
        s, member = key
        return np.array_equal(np.asarray(open_image(shards[s], member)), arrays[key])

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, keys))
    assert len(images._cache) <= 2


def test_bad_image_error_pickles():
    import pickle

    e = pickle.loads(pickle.dumps(BadImageError("/a.tar", "m.png", "broken")))
    assert (e.path, e.member, e.reason) == ("/a.tar", "m.png", "broken")
