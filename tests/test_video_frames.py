"""Video frames: the SEED-Bench-R1 sampling recipe, decoding (PyAV / Pillow), the cache."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from pydantic import ValidationError

from mmsim.data import video as V
from mmsim.data.video import FrameCache, FrameSpec, frame_indices, probe, sample_frames
from mmsim.errors import DataError, UserError
from mmsim.messages import Video

RECIPE = FrameSpec()


def _clip(n: int, size: tuple[int, int] = (96, 64)) -> list[PILImage.Image]:
    """Frame i is a flat colour whose red channel encodes i (0..255 over the clip)."""
    return [PILImage.new("RGB", size, (round(i * 255 / max(1, n - 1)), 40, 200))
            for i in range(n)]


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> Video:
    """10 s at 30 fps."""
    return V.write_video(tmp_path_factory.mktemp("vid") / "clip.mp4", _clip(300), 30)


@pytest.fixture
def no_av(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)


# -- the recipe --------------------------------------------------------------------------

@pytest.mark.parametrize(("total", "fps", "n"), [
    (300, 30, 16),    # 10 s -> 20 -> capped at 16
    (1800, 30, 16),   # 60 s
    (90, 30, 6),      # 3 s
    (30, 30, 4),      # 1 s -> 2 -> at least 4
    (75, 30, 4),      # 2.5 s -> 5 -> evened down
    (165, 30, 10),    # 5.5 s -> 11 -> 10
    (210, 30, 14),    # 7 s
    (3, 30, 4),       # 0.1 s, 3 frames: repeats
    (1, 25, 4),       # one frame
])
def test_recipe_counts(total: int, fps: float, n: int) -> None:
    idx = frame_indices(total, fps, RECIPE)
    assert len(idx) == n
    assert idx[0] == 0 and idx[-1] == total - 1


def test_recipe_indices() -> None:
    assert frame_indices(3, 30, RECIPE) == [0, 1, 1, 2]
    assert frame_indices(90, 30, RECIPE) == [0, 18, 36, 53, 71, 89]
    assert frame_indices(300, 30, RECIPE)[:4] == [0, 20, 40, 60]


def test_even_rounding_rules() -> None:
    odd_min = FrameSpec(min_frames=5)
    assert len(frame_indices(30, 30, odd_min)) == 6      # 2 -> 5 -> 6 (up: never below min)
    assert len(frame_indices(210, 30, odd_min)) == 14
    assert len(frame_indices(3000, 30, FrameSpec(max_frames=15))) == 14
    assert len(frame_indices(75, 30, FrameSpec(even=False))) == 5
    assert frame_indices(1, 30, FrameSpec(min_frames=1, even=False)) == [0]


def test_frame_indices_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        frame_indices(0, 30, RECIPE)
    with pytest.raises(ValueError):
        frame_indices(10, 0, RECIPE)


def test_spec_validation_size_and_key() -> None:
    with pytest.raises(ValidationError):
        FrameSpec(min_frames=8, max_frames=4)
    with pytest.raises(ValidationError):
        FrameSpec(min_frames=5, max_frames=5)      # no even count possible
    with pytest.raises(ValidationError):
        FrameSpec(fps=0)
    with pytest.raises(ValidationError):
        FrameSpec(colour=True)
    assert RECIPE.out_size(640, 360) == (252, 252)
    assert FrameSpec(size=10).out_size(640, 360) == (28, 28)
    assert FrameSpec(size=266).out_size(1, 1) == (280, 280)
    assert FrameSpec(size=None).out_size(161, 121) == (168, 112)
    assert FrameSpec(size=None).out_size(3, 3) == (28, 28)
    assert RECIPE.key() == FrameSpec().key() and len(RECIPE.key()) == 12
    assert RECIPE.key() != FrameSpec(format="png").key()


@settings(max_examples=300, deadline=None)
@given(total=st.integers(1, 200_000), native=st.floats(1, 240),
       fps=st.floats(0.05, 30), lo=st.integers(1, 12), extra=st.integers(0, 40),
       even=st.booleans())
def test_frame_indices_properties(total: int, native: float, fps: float, lo: int,
                                  extra: int, even: bool) -> None:
    hi = lo + extra
    if even and lo == hi and lo % 2:
        hi += 1
    spec = FrameSpec(fps=fps, min_frames=lo, max_frames=hi, even=even)
    idx = frame_indices(total, native, spec)
    n = len(idx)
    assert lo <= n <= hi
    if even:
        assert n % 2 == 0
    assert idx == sorted(idx)
    assert all(0 <= i < total for i in idx)
    if n > 1:
        assert idx[0] == 0 and idx[-1] == total - 1
    if total >= n:
        assert len(set(idx)) == n  # no repeats unless the clip is shorter than n


# -- decoding ------------------------------------------------------------------------------

def test_write_video_mp4_is_deterministic(mp4: Video, tmp_path: Path) -> None:
    assert (mp4.fps, mp4.num_frames, mp4.mime) == (30.0, 300, "video/mp4")
    assert mp4.sha256 == hashlib.sha256(Path(mp4.uri).read_bytes()).hexdigest()
    again = V.write_video(tmp_path / "again.mp4", _clip(300), 30)
    assert again.sha256 == mp4.sha256
    odd = V.write_video(tmp_path / "odd.mp4", _clip(3, (33, 17)), 2.5)
    assert probe(odd.uri).model_dump() == {"frames": 3, "fps": 2.5, "duration_s": 1.2,
                                           "width": 32, "height": 16}
    assert not list(tmp_path.glob(".tmp-*"))


def test_probe_mp4(mp4: Video) -> None:
    info = probe(mp4.uri)
    assert (info.frames, info.fps, info.duration_s) == (300, 30.0, 10.0)
    assert (info.width, info.height) == (96, 64)


def test_container_without_frame_count(tmp_path: Path) -> None:
    mkv = V.write_video(tmp_path / "c.mkv", _clip(75), 25)  # matroska: no count, packets
    assert mkv.mime == "video/x-matroska"
    assert probe(mkv.uri).frames == 75
    assert FrameCache(tmp_path).sample(mkv).indices == (0, 15, 30, 44, 59, 74)
    with pytest.raises(UserError, match="cannot write"):
        V.write_video(tmp_path / "c.webm", _clip(2), 2)
    assert not list(tmp_path.glob("*.webm")) and not list(tmp_path.glob(".tmp-*"))


def test_wrong_reported_count_is_recounted(mp4: Video, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real = V._av_probe
    monkeypatch.setattr(V, "_av_probe", lambda p: real(p).model_copy(update={"frames": 400}))
    s = FrameCache(tmp_path).sample(mp4)
    assert s.info.frames == 300 and s.indices == tuple(frame_indices(300, 30, RECIPE))


def test_decode_mp4_keeps_only_wanted_frames(mp4: Video, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    converted = 0
    real = V._resize

    def counting(img: PILImage.Image, spec: FrameSpec) -> PILImage.Image:
        nonlocal converted
        converted += 1
        return real(img, spec)

    monkeypatch.setattr(V, "_resize", counting)
    s = FrameCache(tmp_path).sample(mp4)
    assert converted == 16
    assert len(s.frames) == 16 and s.indices == tuple(frame_indices(300, 30, RECIPE))
    assert s.timestamps[-1] == pytest.approx(299 / 30)
    for ref, i in zip(s.frames, s.indices, strict=True):
        assert ref.mime == "image/jpeg" and Path(ref.uri).suffix == ".jpg"
        with PILImage.open(ref.uri) as img:
            assert img.size == (252, 252) == (ref.width, ref.height)
            red = img.getpixel((126, 126))[0]  # type: ignore[index]
        assert abs(red - i * 255 / 299) <= 6, (i, red)


def test_gif_through_pillow_without_pyav(no_av: None, tmp_path: Path) -> None:
    gif = V.write_video(tmp_path / "c.gif", _clip(40), 10)
    assert (gif.mime, gif.fps, gif.num_frames) == ("image/gif", 10.0, 40)
    info = probe(gif.uri)
    assert (info.frames, info.fps, info.duration_s) == (40, 10.0, 4.0)
    cache = FrameCache(tmp_path / "cache", FrameSpec(size=None, format="png"))
    s = cache.sample(gif)
    assert s.indices == (0, 6, 11, 17, 22, 28, 33, 39) and cache.decodes == 1
    for ref, i in zip(s.frames, s.indices, strict=True):
        assert ref.mime == "image/png" and (ref.width, ref.height) == (84, 56)
        with PILImage.open(ref.uri) as img:
            assert abs(img.getpixel((5, 5))[0] - round(i * 255 / 39)) <= 2  # type: ignore[index]


def test_gif_identical_frames_keep_their_time(tmp_path: Path) -> None:
    # Pillow stores runs of identical frames as one longer frame; sampling stays on time.
    frames = _clip(6)
    held = [frames[0]] * 5 + frames[1:]
    gif = V.write_video(tmp_path / "held.gif", held, 5)
    assert probe(gif.uri).frames == 10
    s = FrameCache(tmp_path / "cache").sample(gif)
    assert s.indices == (0, 3, 6, 9)
    reds = []
    for ref in s.frames:
        with PILImage.open(ref.uri) as img:
            reds.append(img.getpixel((100, 100))[0])  # type: ignore[index]
    assert reds[0] == pytest.approx(0, abs=3) and reds[1] == pytest.approx(0, abs=3)
    assert reds[2] == pytest.approx(102, abs=3) and reds[3] == pytest.approx(255, abs=3)


def test_non_gif_without_pyav_is_a_user_error(mp4: Video, no_av: None,
                                              tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"needs PyAV: pip install 'mmsim\[video\]'") as exc:
        FrameCache(tmp_path).frames(mp4)
    assert type(exc.value) is UserError and mp4.uri in str(exc.value)
    with pytest.raises(UserError, match=r"mmsim\[video\]"):
        probe(mp4.uri)
    with pytest.raises(UserError, match=r"mmsim\[video\]"):
        V.write_video(tmp_path / "x.mp4", _clip(2), 2)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize(("name", "data"), [
    ("empty.mp4", b""),
    ("noise.mp4", random.Random(0).randbytes(4096)),
    ("noise.mkv", b"\x1a\x45\xdf\xa3" + random.Random(1).randbytes(2000)),
    ("fake.gif", b"GIF89a" + random.Random(2).randbytes(500)),
    ("fake.webp", b"RIFF\x00\x00\x00\x00WEBPVP8 " + random.Random(3).randbytes(100)),
])
def test_bad_videos_are_data_errors(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as exc:
        sample_frames(path, RECIPE, tmp_path / "cache")
    assert str(path) in str(exc.value)
    with pytest.raises(DataError):
        probe(path)
    assert not list((tmp_path / "cache").glob("frames/*/index.json"))


def test_missing_video_and_remote_uri(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        sample_frames(tmp_path / "nope.mp4", RECIPE, tmp_path)
    with pytest.raises(DataError, match="not found"):
        FrameCache(tmp_path).frames(Video(uri=str(tmp_path / "nope.mp4"), sha256="0" * 64))
    with pytest.raises(UserError, match="local files"):
        FrameCache(tmp_path).frames(Video(uri="https://x/y.mp4", sha256="0" * 64))


# -- the cache -----------------------------------------------------------------------------

def test_cache_hits_memory_then_disk(mp4: Video, tmp_path: Path) -> None:
    cache = FrameCache(tmp_path)
    first = cache.frames(mp4)
    assert cache.decodes == 1
    assert cache.frames(mp4) == first and cache.frames(mp4.uri) == first  # Video or path
    assert cache.frames(Video(uri="file://" + os.path.abspath(mp4.uri), sha256=mp4.sha256))
    assert cache.decodes == 1 and cache.stats.memory_hits >= 2

    fresh = FrameCache(tmp_path)  # another process, in effect
    again = fresh.frames(mp4)
    assert fresh.decodes == 0 and fresh.stats.disk_hits == 1
    assert [f.sha256 for f in again] == [f.sha256 for f in first]
    for f in again:
        assert hashlib.sha256(Path(f.uri).read_bytes()).hexdigest() == f.sha256

    entry = cache.entry_dir(mp4)
    assert entry.parent == tmp_path / "frames" and entry.name.endswith(RECIPE.key())
    index = json.loads((entry / "index.json").read_text())
    assert index["info"]["frames"] == 300 and len(index["frames"]) == 16

    other = FrameCache(tmp_path, FrameSpec(max_frames=8))
    assert len(other.frames(mp4)) == 8 and other.decodes == 1


def test_sample_frames_uses_a_shared_cache(mp4: Video, tmp_path: Path) -> None:
    a = sample_frames(mp4, RECIPE, tmp_path)
    b = sample_frames(Path(mp4.uri), RECIPE, tmp_path)
    assert a == b and V.frame_cache(tmp_path, RECIPE).decodes == 1


@pytest.mark.parametrize("damage", ["delete", "truncate", "index"])
def test_damaged_entry_is_rebuilt(mp4: Video, tmp_path: Path, damage: str) -> None:
    first = FrameCache(tmp_path).frames(mp4)
    victim = Path(first[3].uri)
    if damage == "delete":
        victim.unlink()
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:100])
    else:
        (victim.parent / "index.json").write_text('{"version": 1, "fra')
    fresh = FrameCache(tmp_path)
    again = fresh.frames(mp4)
    assert fresh.decodes == 1 and again == first
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == first[3].sha256
    assert FrameCache(tmp_path).frames(mp4) == first  # and trusted again afterwards


def test_memory_hit_checks_files_still_exist(mp4: Video, tmp_path: Path) -> None:
    cache = FrameCache(tmp_path)
    first = cache.frames(mp4)
    Path(first[0].uri).unlink()
    assert cache.frames(mp4) == first and cache.decodes == 2


def test_crash_mid_write_leaves_no_valid_entry(mp4: Video, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = V._encode, 0

    def flaky(img: PILImage.Image, spec: FrameSpec) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt  # the process dies mid-entry
        return real(img, spec)

    monkeypatch.setattr(V, "_encode", flaky)
    with pytest.raises(KeyboardInterrupt):
        FrameCache(tmp_path).frames(mp4)
    monkeypatch.setattr(V, "_encode", real)
    entry = FrameCache(tmp_path).entry_dir(mp4)
    assert len(list(entry.glob("*.jpg"))) == 4 and not (entry / "index.json").exists()
    fresh = FrameCache(tmp_path)
    assert len(fresh.frames(mp4)) == 16 and fresh.decodes == 1


def test_concurrent_calls_decode_once(mp4: Video, tmp_path: Path) -> None:
    cache = FrameCache(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: cache.frames(mp4), range(16)))
    assert cache.decodes == 1 and all(r == results[0] for r in results)


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_video_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """A named pipe (a read that waits forever), a device (/dev/zero: endless) or a
    directory is refused at once (mmsim.data.safeio)."""
    import os

    path = tmp_path / "v.mp4"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(DataError, match="not a regular file"):
        probe(path)
