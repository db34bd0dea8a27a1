"""Video content: probe, sample frames (SEED-Bench-R1 recipe), cache them, write videos.

A video travels as a :class:`~mmsim.messages.Video` reference; models see it as a few
frames, each an :class:`~mmsim.messages.Image` reference to a file written once under
``cache_dir/frames/<video sha256>-<spec key>/`` (``NNN.jpg``/``NNN.png`` + ``index.json``).

Decoding: animated GIF / WebP / PNG (recognised by their magic bytes) always go through
Pillow, so their frames are the same whether or not PyAV is installed; every other file
goes through PyAV (``pip install 'mmsim[video]'``), imported only when needed. PyAV
decodes sequentially and converts only the wanted frames. See ``docs/video-frames.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import structlog
from PIL import Image as PILImage
from PIL import ImageSequence
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mmsim.data import safeio
from mmsim.data.files import png_bytes, write_once
from mmsim.errors import DataError, MmsimError, UserError
from mmsim.messages import Image, Video

__all__ = [
    "CacheStats",
    "FrameCache",
    "FrameSpec",
    "Sampled",
    "VideoInfo",
    "default_cache_dir",
    "frame_cache",
    "frame_indices",
    "probe",
    "sample_frames",
    "video_as_images",
    "video_ref",
    "write_video",
]

log = structlog.get_logger(__name__)

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_PATCH = 28  # frame sides are multiples of the ViT patch-merge size (Qwen2-VL: 14 * 2)
_INDEX_VERSION = 1
_PYAV_HINT = "pip install 'mmsim[video]'"
_GIF_MIN_MS = 100  # GIF delays of 0/10 ms play at 100 ms in browsers; so do we


class FrameSpec(BaseModel):
    """How frames are sampled from a video and stored.

    Defaults follow SEED-Bench-R1 (arXiv 2503.24376): 2 fps over the clip, 4 to 16 frames,
    an even count, resized to 252x252 (``size=256`` rounded to a multiple of 28).

    With ``even``, an odd count is rounded *down*, unless that falls below ``min_frames``
    (odd), in which case it is rounded *up*; so the count is always even and within
    ``[min_frames, max_frames]`` (a spec whose range holds no even number is rejected).
    """

    model_config = _FROZEN
    fps: float = Field(2.0, gt=0, allow_inf_nan=False)
    min_frames: int = Field(4, ge=1)
    max_frames: int = Field(16, ge=1)
    even: bool = True
    size: int | None = Field(256, ge=1)
    format: Literal["png", "jpeg"] = "jpeg"
    quality: int = Field(90, ge=1, le=100)

    @model_validator(mode="after")
    def _check_range(self) -> FrameSpec:
        if self.max_frames < self.min_frames:
            raise ValueError(f"max_frames ({self.max_frames}) < min_frames ({self.min_frames})")
        if self.even and self.min_frames == self.max_frames and self.min_frames % 2:
            raise ValueError(f"even=True but min_frames = max_frames = {self.min_frames} is odd")
        return self

    def key(self) -> str:
        """A short stable hash of the spec (for cache keys)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def count(self, total_frames: int, native_fps: float) -> int:
        """How many frames to sample from a clip of ``total_frames`` at ``native_fps``."""
        n = math.floor(total_frames * self.fps / native_fps + 1e-9)
        n = min(max(n, self.min_frames), self.max_frames)
        if self.even and n % 2:
            n = n - 1 if n - 1 >= self.min_frames else n + 1
        return n

    def out_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) frames are resized to."""
        if self.size is not None:
            side = _round_patch(self.size)
            return side, side
        return _round_patch(width), _round_patch(height)

    @property
    def ext(self) -> str:
        return "jpg" if self.format == "jpeg" else "png"

    @property
    def mime(self) -> str:
        return f"image/{self.format}"


def _round_patch(x: float) -> int:
    return max(_PATCH, math.floor(x / _PATCH + 0.5) * _PATCH)


def frame_indices(total_frames: int, native_fps: float, spec: FrameSpec) -> list[int]:
    """Indices of the frames to sample: ``spec.count(...)`` of them, evenly spaced
    (``linspace(0, total_frames - 1, n)`` rounded half up); repeats when the clip is short.

    Raises:
        ValueError: ``total_frames < 1`` or ``native_fps`` not a positive finite number.
    """
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if not (native_fps > 0 and math.isfinite(native_fps)):
        raise ValueError(f"native_fps must be a positive number, got {native_fps}")
    n = spec.count(total_frames, native_fps)
    if n == 1:
        return [0]
    last = total_frames - 1
    return [math.floor(i * last / (n - 1) + 0.5) for i in range(n)]


class VideoInfo(BaseModel):
    """What a probe finds: frame count, frame rate, ``duration_s = frames / fps``, size."""

    model_config = _FROZEN
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int


class Sampled(BaseModel):
    """The frames sampled from one video, with where in the clip they come from."""

    model_config = _FROZEN
    video_sha256: str
    info: VideoInfo
    indices: tuple[int, ...]
    frames: tuple[Image, ...]

    @property
    def timestamps(self) -> tuple[float, ...]:
        """Seconds from the start of the clip of each sampled frame."""
        return tuple(i / self.info.fps for i in self.indices)


# ---------------------------------------------------------------------------------------
# Decoding


def _import_av() -> Any:
    """The ``av`` module, or None when PyAV is not installed."""
    try:
        import av  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return av


def _pillow_kind(head: bytes) -> str | None:
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def _check_file(path: Path) -> str | None:
    """Raise DataError for a missing or empty file; the Pillow kind of the file, if any."""
    try:  # no device, pipe or oversized file (mmsim.data.safeio)
        safeio.check_regular(path, safeio.MAX_VIDEO_BYTES, what="video file")
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        raise DataError("video file not found", where=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read video file: {exc}", where=str(path)) from None
    if not head:
        raise DataError("video file is empty (0 bytes)", where=str(path))
    return _pillow_kind(head)


def _need_av(path: Path) -> Any:
    av = _import_av()
    if av is None:
        raise UserError(f"decoding {path} needs PyAV: {_PYAV_HINT}", where=str(path))
    return av


def _bad(path: Path, exc: BaseException) -> DataError:
    detail = str(exc).strip() or type(exc).__name__
    return DataError(f"cannot decode video ({type(exc).__name__}: {detail})", where=str(path))


class _Timeline:
    """A Pillow animation on a constant-rate grid: the gcd of the frame durations is one
    tick, so sampling is uniform in time even where frames last longer (Pillow merges
    identical consecutive GIF frames into one longer frame)."""

    def __init__(self, durations_ms: list[int]):
        self.durations = durations_ms
        self.tick = 0
        for d in durations_ms:
            self.tick = math.gcd(self.tick, d)
        self.ticks = sum(durations_ms) // self.tick
        self.fps = 1000.0 / self.tick

    def frame_at(self, ticks: Sequence[int]) -> list[int]:
        """The stored frame shown at each tick."""
        starts, t = [], 0
        for d in self.durations:
            starts.append(t)
            t += d // self.tick
        out, j = [], 0
        for k in sorted(set(ticks)):
            while j + 1 < len(starts) and starts[j + 1] <= k:
                j += 1
            out.append((k, j))
        where = dict(out)
        return [where[k] for k in ticks]


def _pillow_durations(img: PILImage.Image) -> list[int]:
    durations = []
    for frame in ImageSequence.Iterator(img):
        d = int(frame.info.get("duration") or 0)
        durations.append(d if d > 10 else _GIF_MIN_MS)
    return durations


def _pillow_probe(path: Path) -> tuple[VideoInfo, _Timeline]:
    try:
        with PILImage.open(path) as img:
            width, height = img.size
            timeline = _Timeline(_pillow_durations(img))
    except (MmsimError, MemoryError):
        raise
    except Exception as exc:
        raise _bad(path, exc) from exc
    info = VideoInfo(frames=timeline.ticks, fps=timeline.fps,
                     duration_s=timeline.ticks / timeline.fps, width=width, height=height)
    return info, timeline


def _pillow_decode(path: Path, spec: FrameSpec) -> tuple[VideoInfo, list[int],
                                                         list[PILImage.Image]]:
    info, timeline = _pillow_probe(path)
    indices = frame_indices(info.frames, info.fps, spec)
    stored = timeline.frame_at(indices)
    wanted = set(stored)
    got: dict[int, PILImage.Image] = {}
    try:
        with PILImage.open(path) as img:
            for j, frame in enumerate(ImageSequence.Iterator(img)):
                if j in wanted:
                    got[j] = _resize(frame.convert("RGB"), spec)
                if len(got) == len(wanted):
                    break
    except (MmsimError, MemoryError):
        raise
    except Exception as exc:
        raise _bad(path, exc) from exc
    return info, indices, [got[j] for j in stored]


def _av_stream_info(container: Any, path: Path) -> tuple[Any, VideoInfo]:
    if not container.streams.video:
        raise DataError("no video stream in file", where=str(path))
    stream = container.streams.video[0]
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    frames = int(stream.frames or 0)
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000
    fps = float(rate) if rate else (frames / seconds if frames and seconds else 0.0)
    if not (fps > 0 and math.isfinite(fps)):
        raise DataError("video stream has no frame rate", where=str(path))
    info = VideoInfo(frames=frames, fps=fps, duration_s=frames / fps,
                     width=int(ctx.width or 0), height=int(ctx.height or 0))
    return stream, info


def _av_probe(path: Path) -> VideoInfo:
    av = _need_av(path)
    try:
        with av.open(str(path)) as container:
            stream, info = _av_stream_info(container, path)
            if info.frames > 0:
                return info
            # No frame count in the container (webm, some mkv): count packets, no decoding.
            n = sum(1 for pkt in container.demux(stream) if pkt.size)
    except (MmsimError, MemoryError):
        raise
    except Exception as exc:
        raise _bad(path, exc) from exc
    if n == 0:
        raise DataError("video has no frames", where=str(path))
    return info.model_copy(update={"frames": n, "duration_s": n / info.fps})


def _av_pass(path: Path, wanted: set[int], spec: FrameSpec
             ) -> tuple[int, dict[int, PILImage.Image]]:
    """Decode every frame once, converting only those in ``wanted``; the decoded count."""
    av = _need_av(path)
    got: dict[int, PILImage.Image] = {}
    n = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if n in wanted:
                    got[n] = _resize(frame.to_image(), spec)
                n += 1
    except (MmsimError, MemoryError):
        raise
    except Exception as exc:
        raise _bad(path, exc) from exc
    return n, got


def _av_decode(path: Path, spec: FrameSpec) -> tuple[VideoInfo, list[int],
                                                     list[PILImage.Image]]:
    info = _av_probe(path)
    indices = frame_indices(info.frames, info.fps, spec)
    n, got = _av_pass(path, set(indices), spec)
    if n == 0:
        raise DataError("video has no decodable frames", where=str(path))
    if n != info.frames:
        # The container's count was off (or frames failed to decode): plan again on the
        # real count and decode a second time.
        log.debug("video.recount", path=str(path), reported=info.frames, decoded=n)
        info = info.model_copy(update={"frames": n, "duration_s": n / info.fps})
        indices = frame_indices(n, info.fps, spec)
        n2, got = _av_pass(path, set(indices), spec)
        if n2 != n:
            raise DataError(f"video decodes to {n} then {n2} frames", where=str(path))
    return info, indices, [got[i] for i in indices]


def _resize(img: PILImage.Image, spec: FrameSpec) -> PILImage.Image:
    img = img.convert("RGB")
    size = spec.out_size(*img.size)
    return img if img.size == size else img.resize(size, PILImage.Resampling.BICUBIC)


def probe(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and size of a video file, without decoding frames (PyAV;
    animated GIF/WebP/PNG through Pillow, on their gcd-of-durations time grid).

    Raises:
        DataError: missing, empty, corrupt or frameless file.
        UserError: PyAV is needed and not installed.
    """
    p = Path(path)
    if _check_file(p):
        return _pillow_probe(p)[0]
    return _av_probe(p)


def _decode(path: Path, spec: FrameSpec) -> tuple[VideoInfo, list[int], list[PILImage.Image]]:
    if _check_file(path):
        return _pillow_decode(path, spec)
    return _av_decode(path, spec)


# ---------------------------------------------------------------------------------------
# Cache


class CacheStats:
    """Counters of a :class:`FrameCache`: real decodes, memory hits, disk hits."""

    def __init__(self) -> None:
        self.decodes = 0
        self.memory_hits = 0
        self.disk_hits = 0

    def __repr__(self) -> str:
        return (f"CacheStats(decodes={self.decodes}, memory_hits={self.memory_hits}, "
                f"disk_hits={self.disk_hits})")


def _sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _encode(img: PILImage.Image, spec: FrameSpec) -> bytes:
    if spec.format == "png":
        return png_bytes(img)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=spec.quality)
    return buf.getvalue()


class FrameCache:
    """Sampled frames of videos under one :class:`FrameSpec`, decoded at most once.

    Entries live in ``cache_dir/frames/<video sha256>-<spec key>/``: frame files written
    atomically, then ``index.json`` (written last, atomically: it is the commit mark). An
    entry is trusted only if its index parses and every frame file's sha256 matches, so a
    crash or a deleted file makes it rebuilt. An in-process LRU of ``memory_items`` entries
    sits in front. Thread-safe: concurrent calls for one video decode it once.

    Args:
        cache_dir: the cache root.
        spec: the frame sampling spec (default: the SEED-Bench-R1 recipe).
        memory_items: how many entries the in-process LRU keeps.
    """

    def __init__(self, cache_dir: str | Path, spec: FrameSpec | None = None, *,
                 memory_items: int = 256):
        self.root = Path(cache_dir)
        self.spec = spec or FrameSpec()
        self.stats = CacheStats()
        self._memory_items = memory_items
        self._lru: OrderedDict[str, Sampled] = OrderedDict()
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    @property
    def decodes(self) -> int:
        """How many videos this cache really decoded."""
        return self.stats.decodes

    def frames(self, video: Video | str | Path) -> tuple[Image, ...]:
        """The sampled frames of ``video`` (see :meth:`sample`)."""
        return self.sample(video).frames

    def sample(self, video: Video | str | Path) -> Sampled:
        """The sampled frames of ``video`` with its info and the frame indices.

        A :class:`Video` is keyed by its ``sha256`` (trusted); a path is hashed (once per
        path, size and mtime in this process).

        Raises:
            DataError: missing, empty, corrupt or frameless video.
            UserError: PyAV is needed and not installed, or a non-file URI.
        """
        path, digest = self._resolve(video)
        key = f"{digest}-{self.spec.key()}"
        hit = self._memory_get(key)
        if hit is not None:
            return hit
        with self._key_lock(key):
            hit = self._memory_get(key)
            if hit is not None:
                return hit
            folder = self.root / "frames" / key
            sampled = self._read(folder, digest)
            if sampled is not None:
                with self._lock:
                    self.stats.disk_hits += 1
            else:
                sampled = self._build(path, digest, folder)
            self._memory_put(key, sampled)
            return sampled

    def entry_dir(self, video: Video | str | Path) -> Path:
        """The folder that holds (or will hold) the frames of ``video``."""
        _, digest = self._resolve(video)
        return self.root / "frames" / f"{digest}-{self.spec.key()}"

    # -- internals -----------------------------------------------------------------------

    def _resolve(self, video: Video | str | Path) -> tuple[Path, str]:
        if isinstance(video, Video):
            uri = video.uri
            if uri.startswith("file://"):
                uri = uri[len("file://"):]
            elif "://" in uri:
                raise UserError(f"video {video.uri!r}: only local files can be decoded",
                                where=video.uri)
            return Path(uri), video.sha256
        path = Path(video)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise DataError("video file not found", where=str(path)) from None
        memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        with self._lock:
            digest = self._hashes.get(memo)
        if digest is None:
            digest = _sha256_file(path)
            with self._lock:
                self._hashes[memo] = digest
        return path, digest

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _memory_get(self, key: str) -> Sampled | None:
        with self._lock:
            hit = self._lru.get(key)
            if hit is None:
                return None
            self._lru.move_to_end(key)
        if not all(os.path.exists(f.uri) for f in hit.frames):  # the cache dir was cleared
            with self._lock:
                self._lru.pop(key, None)
            return None
        with self._lock:
            self.stats.memory_hits += 1
        return hit

    def _memory_put(self, key: str, sampled: Sampled) -> None:
        with self._lock:
            self._lru[key] = sampled
            self._lru.move_to_end(key)
            while len(self._lru) > self._memory_items:
                self._lru.popitem(last=False)

    def _read(self, folder: Path, digest: str) -> Sampled | None:
        """The entry in ``folder`` if complete and intact, else None."""
        index = folder / "index.json"
        try:
            raw = json.loads(index.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("video.cache_invalid", entry=str(folder), reason=str(exc))
            return None
        try:
            if raw.get("version") != _INDEX_VERSION or raw.get("video_sha256") != digest:
                raise ValueError("index for another version or video")
            info = VideoInfo.model_validate(raw["info"])
            frames = []
            for f in raw["frames"]:
                path = folder / f["name"]
                if _sha256_file(path) != f["sha256"]:
                    raise ValueError(f"{f['name']}: sha256 mismatch")
                frames.append(Image(uri=str(path), sha256=f["sha256"], mime=self.spec.mime,
                                    width=f["width"], height=f["height"]))
            return Sampled(video_sha256=digest, info=info,
                           indices=tuple(raw["indices"]), frames=tuple(frames))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("video.cache_invalid", entry=str(folder), reason=str(exc))
            return None

    def _build(self, path: Path, digest: str, folder: Path) -> Sampled:
        t0 = time.perf_counter()
        info, indices, images = _decode(path, self.spec)
        with self._lock:
            self.stats.decodes += 1
        (folder / "index.json").unlink(missing_ok=True)  # uncommit a stale entry first
        frames, rows = [], []
        for k, img in enumerate(images):
            data = _encode(img, self.spec)
            sha = hashlib.sha256(data).hexdigest()
            name = f"{k:03d}.{self.spec.ext}"
            fpath = write_once(folder, name, data)
            frames.append(Image(uri=str(fpath), sha256=sha, mime=self.spec.mime,
                                width=img.width, height=img.height))
            rows.append({"name": name, "sha256": sha, "width": img.width,
                         "height": img.height})
        index = {"version": _INDEX_VERSION, "video_sha256": digest, "source": str(path),
                 "spec": self.spec.model_dump(mode="json"), "info": info.model_dump(),
                 "indices": indices, "frames": rows}
        write_once(folder, "index.json", json.dumps(index, indent=1).encode())
        log.debug("video.decoded", path=str(path), frames=len(frames), total=info.frames,
                  seconds=round(time.perf_counter() - t0, 3))
        return Sampled(video_sha256=digest, info=info, indices=tuple(indices),
                       frames=tuple(frames))


_CACHES: dict[tuple[str, str], FrameCache] = {}
_CACHES_LOCK = threading.Lock()


def frame_cache(cache_dir: str | Path, spec: FrameSpec | None = None) -> FrameCache:
    """The process-wide :class:`FrameCache` for ``(cache_dir, spec)``."""
    spec = spec or FrameSpec()
    key = (str(Path(cache_dir).resolve()), spec.key())
    with _CACHES_LOCK:
        cache = _CACHES.get(key)
        if cache is None:
            cache = _CACHES[key] = FrameCache(cache_dir, spec)
        return cache


def default_cache_dir() -> Path:
    """The cache folder of backends that turn video parts into frames: ``$MMSIM_CACHE_DIR``,
    else ``~/.cache/mmsim`` (entries land in its ``frames/``)."""
    root = os.environ.get("MMSIM_CACHE_DIR") or str(Path.home() / ".cache" / "mmsim")
    return Path(root)


def video_as_images(video: Video, spec: FrameSpec | None = None,
                    cache_dir: str | Path | None = None) -> tuple[Image, ...]:
    """A video part as the images a backend without video input sends instead: its frames
    under ``spec`` (default: the SEED-Bench-R1 recipe), cached by content hash."""
    return frame_cache(cache_dir or default_cache_dir(), spec).frames(video)


def sample_frames(video: Video | str | Path, spec: FrameSpec,
                  cache_dir: str | Path) -> tuple[Image, ...]:
    """The frames of ``video`` sampled under ``spec``, cached under ``cache_dir``
    (through the shared :func:`frame_cache`). Sync: run it in a thread from async code."""
    return frame_cache(cache_dir, spec).frames(video)


# ---------------------------------------------------------------------------------------
# Writing


_MIMES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
          ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".webm": "video/webm",
          ".gif": "image/gif", ".webp": "image/webp"}


def video_ref(path: str | Path) -> Video:
    """A video file by reference: its sha256 (of the bytes) and a mime type by suffix."""
    p = Path(path)
    return Video(uri=str(p), sha256=_sha256_file(p),
                 mime=_MIMES.get(p.suffix.lower(), "video/mp4"))


def write_video(path: str | Path, frames: Sequence[PILImage.Image], fps: float) -> Video:
    """Write ``frames`` as a video and return a reference to it.

    ``.gif`` is written by Pillow (delays are whole centiseconds, at least 2: the returned
    ``fps`` is the rate actually stored, at most 50). Other suffixes (``.mp4``, ``.mkv``,
    ``.mov``, ``.avi``) need PyAV: MPEG-4 Part 2 (``mpeg4``, ``libx264`` if absent),
    yuv420p, sides cropped to even, bit-exact flags (same input and PyAV build => same
    bytes). The file is written to a temporary name and renamed into place.

    Raises:
        ValueError: no frames, frames of different sizes, or ``fps <= 0``.
        UserError: a non-GIF path and PyAV not installed, or a container PyAV cannot
            write MPEG-4 into (``.webm``).
    """
    p = Path(path)
    if not frames:
        raise ValueError("write_video needs at least one frame")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    sizes = {f.size for f in frames}
    if len(sizes) > 1:
        raise ValueError(f"frames have different sizes: {sorted(sizes)}")
    suffix = p.suffix.lower()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if suffix == ".gif":
            stored_fps = _write_gif(tmp, frames, fps)
        else:
            av = _import_av()
            if av is None:
                raise UserError(f"writing {p} needs PyAV: {_PYAV_HINT} (or write a .gif)",
                                where=str(p))
            try:
                stored_fps = _write_av(av, tmp, frames, fps)
            except (MmsimError, MemoryError):
                raise
            except Exception as exc:  # e.g. a container that cannot hold the codec
                raise UserError(f"cannot write video {p}: {exc}", where=str(p)) from exc
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Video(uri=str(p), sha256=_sha256_file(p), mime=_MIMES.get(suffix, "video/mp4"),
                 fps=stored_fps, num_frames=len(frames))


def _write_gif(path: Path, frames: Sequence[PILImage.Image], fps: float) -> float:
    cs = max(2, round(100 / fps))
    rgb = [f.convert("RGB") for f in frames]
    rgb[0].save(path, format="GIF", save_all=True, append_images=rgb[1:],
                duration=cs * 10, loop=0)
    return 100 / cs


def _pick_codec(av: Any) -> str:
    for name in ("mpeg4", "libx264"):
        try:
            av.codec.Codec(name, "w")
        except Exception:
            continue
        return name
    raise UserError("this PyAV build has neither the mpeg4 nor the libx264 encoder")


def _write_av(av: Any, path: Path, frames: Sequence[PILImage.Image], fps: float) -> float:
    rate = Fraction(fps).limit_denominator(1001)
    codec = _pick_codec(av)
    w, h = frames[0].size
    w, h = max(2, w - w % 2), max(2, h - h % 2)
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        opts = {"flags": "+bitexact"}
        opts.update({"qmax": "4"} if codec == "mpeg4" else {"crf": "18"})
        stream.options = opts
        for i, img in enumerate(frames):
            rgb = img.convert("RGB")
            if rgb.size != (w, h):
                rgb = rgb.crop((0, 0, w, h))
            frame = av.VideoFrame.from_image(rgb)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return float(rate)

