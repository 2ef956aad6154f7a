"""Video colorization with colors that hold still from frame to frame: a thin layer over pipeline.py.

Each frame goes through the one pipeline (prepare -> predict -> compose); between predict and compose
the :class:`colorize.temporal.TemporalSmoother` carries the previous frame's colors along the motion.
This module reads and writes the film with PyAV (FFmpeg), carries color hints through their shots and
measures a video's flicker.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from colorize.color import normalize_ab, rgb_to_lab
from colorize.io import AtomicFile
from colorize.layout import working_shape
from colorize.metadata import SOFTWARE
from colorize.pipeline import Colorizer, Prepared
from colorize.temporal import KeyframePlan, Motion, TemporalConfig, TemporalSmoother, estimate_motion, is_scene_cut

if TYPE_CHECKING:
    import av

    from colorize.hints import Hint

# Encoders tried in order for an output extension; the first one FFmpeg has and the container takes.
ENCODERS: dict[str, tuple[str, ...]] = {
    ".webm": ("libvpx-vp9", "libvpx"),
    ".avi": ("mpeg4",),
    ".ogv": ("libtheora",),  # Ogg takes Theora only; FFmpeg builds (PyAV's wheels among them) often lack it
    ".ogg": ("libtheora",),
}
DEFAULT_ENCODERS = ("libx264", "h264", "mpeg4")
ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "18", "preset": "veryfast"},  # "fast" took ~20 ms of a 852x480 frame's 51 (2 cores)
    "libvpx-vp9": {"crf": "30", "b": "0", "row-mt": "1"},
    "libvpx": {"crf": "10", "b": "2M"},
}
FALLBACK_AUDIO_CODECS = ("aac", "libopus", "libvorbis")  # when the container cannot hold the audio as is
AUDIO_ENCODERS: dict[str, tuple[str, ...]] = {  # containers that take none of those: MPEG-PS takes MPEG audio
    ".mpg": ("mp2",),
    ".mpeg": ("mp2",),
}
WRITABLE = ".mp4, .mkv, .mov, .webm or .avi"  # containers this package's FFmpeg writes (tested)
# frames composed side by side: the full-resolution end is the longest stage once the network skips frames (480p,
# 2 cores: ~20 ms a frame against ~12 for the network's share); two keep the writer fed
COMPOSERS = 2


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file and the reason."""


# -- hints for a film: one frame's hints, carried through its shot ---------------------------------
HINT_MIN_RELIABILITY = 0.3  # a carried hint stops where the flow at its point is less reliable than this


def video_hints_from_json(data: Any) -> dict[int, list[Hint]]:
    """A JSON list of {"frame", "x", "y", "color", "radius"?} (frame: 0-based index in the video) ->
    {frame: hints}. ValueError names the bad entry."""
    from colorize.hints import hints_from_json

    if not isinstance(data, list):
        raise ValueError(f'video hints must be a JSON list of {{"frame", "x", "y", "color", "radius"?}}, '
                         f"got {type(data).__name__}")
    hints = hints_from_json(data, other_fields=("frame",))
    out: dict[int, list[Hint]] = {}
    for i, (item, hint) in enumerate(zip(data, hints)):
        frame = item.get("frame")
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
            raise ValueError(f"hint {i}: needs a frame number >= 0 (\"frame\": 0 is the first frame), got {frame!r}")
        out.setdefault(frame, []).append(hint)
    return out


def load_video_hints(path: str | Path) -> dict[int, list[Hint]]:
    """Read a video hints file (see :func:`video_hints_from_json`)."""
    from colorize.hints import read_json

    path = Path(path)
    try:
        return video_hints_from_json(read_json(path))
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError and UnicodeDecodeError among them
        raise ValueError(f"{path}: {e}") from None


def _flow_at(flow: np.ndarray, x: float, y: float) -> np.ndarray:
    h, w = flow.shape[:2]
    return flow[min(h - 1, max(0, round(y))), min(w - 1, max(0, round(x)))]


def _carry(x: float, y: float, motion: Motion, *, forward: bool) -> tuple[float, float] | None:
    """A point (working px) moved one frame along ``motion`` (previous -> current): backward from the
    current frame to the previous one, or forward (the backward flow inverted by fixed-point steps).
    None where the flow is unreliable there or the point leaves the frame."""
    h, w = motion.flow.shape[:2]
    if forward:  # find q in the current frame with q + back(q) = p
        qx, qy = x, y
        for _ in range(4):
            dx, dy = _flow_at(motion.flow, qx, qy)
            qx, qy = x - float(dx), y - float(dy)
        nx, ny, at = qx, qy, (qx, qy)
    else:
        dx, dy = _flow_at(motion.flow, x, y)
        nx, ny, at = x + float(dx), y + float(dy), (x, y)
    reliable = float(motion.confidence[min(h - 1, max(0, round(at[1]))), min(w - 1, max(0, round(at[0])))])
    if reliable < HINT_MIN_RELIABILITY or not (-0.5 <= nx <= w - 0.5 and -0.5 <= ny <= h - 0.5):
        return None
    return nx, ny


def track_hints(src: str | Path, colorizer: Colorizer, hints: dict[int, list[Hint]], *,
                config: TemporalConfig | None = None) -> tuple[dict[int, list[Hint]], list[int]]:
    """Carry each frame's hints through its shot, forward and backward, along the optical flow the
    temporal smoothing computes (same working size, same flow, same cut rules). A carried hint stops at
    the shot's cuts, where the flow at its point is unreliable (occlusion) or where it leaves the frame.

    A first pass over the video that runs no network; only the current shot's motion is kept.

    Args:
        hints: {frame index: hints in that frame's pixels}.
    Returns:
        {frame index: hints}, for every frame a hint reaches; and the cuts (indices of the frames that
        start a shot).
    """
    from colorize.hints import check_inside

    cfg = config or TemporalConfig()
    geometry = _geometry(src)
    width, height = geometry.shown
    container, video, _ = open_video(src)
    for frame, frame_hints in hints.items():
        try:
            check_inside(frame_hints, width, height)
        except ValueError as e:
            container.close()
            raise VideoError(f"{src}: frame {frame}: {e}") from None
    out: dict[int, list[Hint]] = {}
    cuts: list[int] = []
    shot_start, motions, prev = 0, [], None  # motions[k]: from frame shot_start + k to the next

    def finish_shot(end: int) -> None:  # frames shot_start .. end - 1 form a shot
        sx, sy = w_small / width, h_small / height  # working px per input px
        for start in [f for f in hints if shot_start <= f < end]:
            for hint in hints[start]:
                out.setdefault(start, []).append(hint)
                for forward in (True, False):
                    x, y, t = hint.x * sx - 0.5, hint.y * sy - 0.5, start  # pixel centers
                    while shot_start <= (t + 1 if forward else t - 1) < end:
                        # motions[k] takes frame shot_start + k to the next one
                        moved = _carry(x, y, motions[t - shot_start if forward else t - 1 - shot_start], forward=forward)
                        if moved is None:
                            break
                        (x, y), t = moved, t + 1 if forward else t - 1
                        out.setdefault(t, []).append(replace(hint, x=min(width, max(0.0, (x + 0.5) / sx)),
                                                             y=min(height, max(0.0, (y + 0.5) / sy))))

    index = 0
    try:
        for frame in _demux(Path(src), container, video):
            l = colorizer.prepare(geometry.pixels(frame)).l_small[0, 0].cpu().numpy()
            h_small, w_small = l.shape
            if prev is not None:
                motion = None if is_scene_cut(prev, l, threshold=cfg.cut_threshold) else estimate_motion(prev, l, cfg)
                if motion is None or float(motion.confidence.mean()) < cfg.min_reliable:
                    finish_shot(index)
                    cuts.append(index)
                    shot_start, motions = index, []
                else:
                    motions.append(Motion(motion.flow.astype(np.float16), (motion.confidence * 255).astype(np.uint8) / 255))
            prev = l
            index += 1
        if index:
            finish_shot(index)
    finally:
        container.close()
    late = [f for f in hints if f >= index]
    if late:
        raise VideoError(f"{src}: hints for frame {late[0]}, but the video has {index} frames (numbered from 0)")
    return out, cuts


# -- decoding and encoding ------------------------------------------------------------------------
def open_video(src: str | Path) -> tuple[av.container.InputContainer, av.VideoStream, list[av.AudioStream]]:
    """Open ``src`` for reading. Returns (container, its first video stream, its audio streams: every track, a film's
    languages and commentaries, that this FFmpeg can decode).
    Raises :class:`VideoError` naming the file when it is missing, not a video, or cannot be decoded."""
    import av

    src = Path(src)
    if src.is_dir():
        raise VideoError(f"{src}: a folder, not a video file; colorize video takes one film at a time")
    if not src.is_file():
        raise VideoError(f"{src}: no such file")
    try:
        container = av.open(str(src), metadata_errors="ignore")
    except av.FFmpegError as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise VideoError(f"{src}: not a readable video ({reason}); not a video file, or truncated") from e
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        container.close()
        raise VideoError(f"{src}: no video stream (streams found: {kinds})")
    video = container.streams.video[0]
    if video.codec_context is None:
        container.close()
        raise VideoError(f"{src}: unsupported video codec (this FFmpeg build has no decoder for it)")
    if not video.codec_context.width or not video.codec_context.height:  # no frame could be decoded to tell it
        container.close()
        raise VideoError(f"{src}: no decodable video frames (the picture size is unknown); the file is cut or corrupt")
    video.thread_type = "AUTO"
    # undecodable audio (no codec context) is dropped: remuxing may still be possible, but keep it simple
    return container, video, [a for a in container.streams.audio if a.codec_context is not None]


def dropped_streams(container: av.container.InputContainer, kept: Sequence[av.stream.Stream]) -> list[str]:
    """The streams of ``container`` not in ``kept``, each named for a user: ``subtitle #2 (srt, eng)``."""
    names, kept_indexes = [], {k.index for k in kept}
    for s in container.streams:
        if s.index not in kept_indexes:
            ctx = s.codec_context if s.type in ("video", "audio", "subtitle") else None
            about = [ctx.name if ctx is not None else "no decoder" if s.type == "audio" else "",
                     s.metadata.get("language", "")]
            described = ", ".join(x for x in about if x)
            names.append(f"{s.type} #{s.index}" + (f" ({described})" if described else ""))
    return names


def _stream_duration(video: av.VideoStream) -> float | None:
    """How long the video stream is (seconds), from its header, or None if the header does not say."""
    if video.duration:
        return float(video.duration * video.time_base)
    tag = video.metadata.get("DURATION", "")  # Matroska and WebM keep it as a tag: "00:01:02.500000000"
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def _stream_end(video: av.VideoStream) -> float | None:
    """When the video stream should end (seconds), from its header, or None if the header does not say."""
    duration = _stream_duration(video)
    start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    return None if duration is None else start + duration


def _demux(src: Path, container: av.container.InputContainer, video: av.VideoStream,
           audio: Sequence[av.AudioStream] = (), damaged: list[int] | None = None
           ) -> Iterator[av.VideoFrame | av.Packet]:
    """Decoded video frames and raw audio packets in file order. A frame without a timestamp (an elementary stream,
    such as a raw .h264 from a camera, has none) gets the one after its predecessor, at the stream's rate.

    A damaged video packet (a scratch in an old digitized file) that the decoder refuses is skipped, as FFmpeg does:
    the frames keep their timestamps, so the one before it stays on screen in its place; ``damaged`` gets the index
    of the frame it came before. Errors of the file itself, more damaged packets than sound ones, and a stream that
    ends well before its header says it should (a truncated file) raise :class:`VideoError`."""
    import av

    streams = [video, *audio]
    frame_rate = video.guessed_rate or video.average_rate or Fraction(25)
    frames, end, next_pts, packets, skipped = 0, 0.0, 0, 0, 0
    try:
        for packet in container.demux(streams):
            if packet.stream.type == "video":
                packets += packet.size > 0  # not the empty one at the end, which flushes the decoder
                try:
                    decoded = packet.decode()
                except av.InvalidDataError:
                    skipped += 1
                    if damaged is not None:
                        damaged.append(frames)
                    continue
                for frame in decoded:
                    frames += 1
                    time_base = frame.time_base or video.time_base
                    if frame.pts is None:
                        frame.pts, frame.time_base = next_pts, time_base
                    step = frame.duration or max(1, round(1 / (frame_rate * time_base)))
                    next_pts = frame.pts + step
                    end = max(end, float((frame.pts + (frame.duration or 0)) * time_base))
                    yield frame
            elif packet.dts is not None:
                yield packet
    except av.FFmpegError as e:
        raise VideoError(f"{src}: cannot decode past frame {frames}: {e.strerror}; "
                         "the file is truncated or corrupt") from e
    if frames == 0:
        raise VideoError(f"{src}: no decodable video frames; the file is truncated or corrupt")
    if skipped > packets / 2:
        raise VideoError(f"{src}: {skipped} of its {packets} video packets cannot be decoded; the file is corrupt")
    expected = _stream_end(video)
    rate = _frame_rate(video)
    if expected is not None and end < expected - 2 / float(rate):
        raise VideoError(f"{src}: the video stops at {end:.2f} s of {expected:.2f} s; the file is truncated")


def _frame_rate(video: av.video.stream.VideoStream) -> Fraction:
    """A video stream's frame rate: its average, else FFmpeg's guess, else 25."""
    return video.average_rate or video.guessed_rate or Fraction(25)


def check_output(dst: Path) -> None:
    """Refuse, before any work, an output whose container needs a video encoder this FFmpeg lacks (.ogv: Theora).
    Raises :class:`VideoError` naming the file, the encoders and the containers that work."""
    import av

    names = ENCODERS.get(dst.suffix.lower(), DEFAULT_ENCODERS)
    for name in names:
        try:
            av.Codec(name, "w")
            return
        except ValueError:  # av.codec.codec.UnknownCodecError: not in this build
            continue
    raise VideoError(f"{dst}: '{dst.suffix}' files need the {' or '.join(names)} video encoder, which this FFmpeg "
                     f"does not have; name the output {WRITABLE}")


def _add_video_stream(out: av.container.OutputContainer, dst: Path, video: av.VideoStream,
                      geometry: _Geometry) -> av.VideoStream:
    """An encoder stream with the input's size as shown (upright: no display matrix), frame rate, time base and
    color tags."""
    import av

    width, height = geometry.shown
    rate = _frame_rate(video)
    errors = []
    for name in ENCODERS.get(dst.suffix.lower(), DEFAULT_ENCODERS):
        try:
            codec = av.Codec(name, "w")
            stream = out.add_stream(name, rate=rate)
        except (av.FFmpegError, ValueError) as e:  # unknown encoder, or the container refuses it
            errors.append(f"{name}: {e}")
            continue
        formats = [f.name for f in codec.video_formats or []]
        even = width % 2 == 0 and height % 2 == 0
        candidates = (["yuv420p"] if even else []) + ["yuv444p"]
        pix_fmt = next((f for f in candidates if f in formats), formats[0] if formats else "yuv420p")
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = dict(ENCODER_OPTIONS.get(name, {}))
        ctx = stream.codec_context
        if name == "mpeg4":  # MPEG-4 part 2 allows no time base finer than 1/65535: use 1/rate
            stream.bit_rate = max(1_000_000, int(width * height * float(rate) * 0.2))
        else:
            ctx.time_base = video.time_base
            stream.time_base = video.time_base
        src_ctx = video.codec_context
        if src_ctx.sample_aspect_ratio:  # a quarter turn makes a pixel's width its height
            sar = src_ctx.sample_aspect_ratio
            ctx.sample_aspect_ratio = 1 / sar if geometry.turns % 2 else sar
        ctx.colorspace, ctx.color_primaries, ctx.color_trc = (
            src_ctx.colorspace, src_ctx.color_primaries, src_ctx.color_trc)
        return stream
    raise VideoError(f"{dst}: no video encoder for '{dst.suffix}' files ({'; '.join(errors)})")


# What a colorized film keeps of its container's tags: what it is and whose (title, date, place, rights), not how it
# was written (encoder, handler, brands); and its comment says it was colorized (as a photo's EXIF and XMP do)
_KEPT_FILM_TAGS = ("title", "artist", "author", "album", "album_artist", "composer", "date", "year", "creation_time",
                   "copyright", "description", "synopsis", "comment", "genre", "keywords", "language", "location",
                   "location-eng", "com.apple.quicktime.location.iso6709")


def film_tags(container: av.container.InputContainer) -> dict[str, str]:
    """The container tags a colorized version of a film keeps (``_KEPT_FILM_TAGS``), its ``comment`` saying it was
    colorized, by what (:data:`colorize.io.SOFTWARE`)."""
    tags = {k: v for k, v in container.metadata.items() if k.lower() in _KEPT_FILM_TAGS and v}
    note = f"Colorized by {SOFTWARE}: its colors were guessed by a trained model"
    comment = next((k for k in tags if k.lower() == "comment"), "comment")
    tags[comment] = f"{tags[comment]}. {note}" if tags.get(comment) else note
    return tags


def _open_output(tmp: Path, dst: Path, video: av.VideoStream, audio: Sequence[av.AudioStream], geometry: _Geometry,
                 tags: dict[str, str] | None = None
                 ) -> tuple[av.container.OutputContainer, av.VideoStream, dict[int, tuple[av.AudioStream, bool]]]:
    """The output at ``tmp`` (a container of ``dst``'s kind) with its streams and ``tags`` (:func:`film_tags`), its
    header written: (container, video stream, {input audio stream's index: (its output stream, whether it is
    copied)}). Each audio track is copied where the container takes its codec, else re-encoded; some containers
    refuse a codec only when the header is written (Opus in .mov): then every track is re-encoded."""
    import av

    for copy in (True, False):
        try:
            out = av.open(str(tmp), "w")
        except (av.FFmpegError, ValueError) as e:
            raise VideoError(f"{dst}: cannot write a video with extension '{dst.suffix}' ({e})") from e
        out.metadata.update(tags or {})
        if out.format.name.startswith("image2"):  # FFmpeg writes .jpg, .png... as a sequence of pictures
            out.close()
            raise VideoError(f"{dst}: '{dst.suffix}' is a picture format, not a video's; name the output {WRITABLE}")
        tracks: dict[int, tuple[av.AudioStream, bool]] = {}
        try:
            vout = _add_video_stream(out, dst, video, geometry)
            tracks = {a.index: _add_audio_stream(out, dst, a, copy=copy) for a in audio}
            out.start_encoding()
            return out, vout, tracks
        except av.FFmpegError as e:
            with contextlib.suppress(Exception):
                out.close()
            if not any(copied for _, copied in tracks.values()):
                raise VideoError(f"{dst}: cannot write a '{dst.suffix}' file of this film ({e})") from e
        except BaseException:
            with contextlib.suppress(Exception):
                out.close()
            raise
    raise AssertionError("unreachable: the second try re-encodes the audio")


def _add_audio_stream(out: av.container.OutputContainer, dst: Path, audio: av.AudioStream, *,
                      copy: bool = True) -> tuple[av.AudioStream, bool]:
    """Copy the audio as is if the container accepts its codec (and ``copy``), else re-encode it; with its language
    and title (which track it is: a dub, a commentary). Returns (stream, copied)."""
    import av

    stream, copied = None, False
    if copy:
        try:
            stream, copied = out.add_stream_from_template(audio), True
        except ValueError:  # "'mp4' format does not support 'pcm_mulaw' codec"
            pass
    layout = audio.layout.name if audio.layout else "stereo"
    if layout in ("1 channels", "2 channels"):  # no channel order (PCM without a mask): MP2 takes only these two
        layout = "mono" if layout[0] == "1" else "stereo"
    encoders = AUDIO_ENCODERS.get(dst.suffix.lower(), FALLBACK_AUDIO_CODECS)
    for name in encoders if stream is None else ():
        try:
            rates = av.Codec(name, "w").audio_rates  # MP2: 16 to 48 kHz only; the encoder resamples
            rate = audio.rate or 48000
            if rates and rate not in rates:
                rate = min((r for r in rates if r >= rate), default=max(rates))
            stream = out.add_stream(name, rate=rate, layout=layout)
            break
        except (av.FFmpegError, ValueError):
            continue
    if stream is None:
        raise VideoError(f"{dst}: '{dst.suffix}' files take none of the audio codecs {', '.join(encoders)}")
    for key in ("language", "title"):
        if key in audio.metadata:
            stream.metadata[key] = audio.metadata[key]
    return stream, copied


GRAY_CHROMA_TOLERANCE = 1  # 8-bit U and V this close to 128 everywhere: a frame without color


def _is_gray(frame: av.VideoFrame) -> bool:
    """Whether a planar YUV frame has neutral chroma everywhere (a black-and-white film), read from its U and
    V planes as they are (no conversion)."""
    if not frame.format.name.startswith(("yuv4", "yuvj4")) or len(frame.planes) < 3:
        return False
    for plane in frame.planes[1:3]:
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height, : plane.width]
        if rows.size == 0 or np.abs(rows.astype(np.int16) - 128).max() > GRAY_CHROMA_TOLERANCE:
            return False
    return True


@dataclass(frozen=True)
class _Geometry:
    """A video's frames as coded (``width`` x ``height``) and as a player shows them: turned ``turns`` quarter turns
    counter-clockwise by the stream's display matrix (a phone films portrait as landscape frames plus a rotation).
    The pipeline works on the frames as shown, and the output is written upright, as photos are (EXIF orientation)."""

    width: int
    height: int
    turns: int = 0

    @property
    def shown(self) -> tuple[int, int]:
        """(width, height) as shown."""
        return (self.height, self.width) if self.turns % 2 else (self.width, self.height)

    def pixels(self, frame: av.VideoFrame) -> torch.Tensor:
        """Decoded frame -> the pipeline's 8-bit input as shown: (1, 1, H, W) gray for a frame without color (its
        lightness is then one table lookup, and FFmpeg's conversion to gray is cheaper than to RGB), else (1, 3, H, W)
        sRGB."""
        if _is_gray(frame):
            pixels = torch.from_numpy(frame.to_ndarray(format="gray", width=self.width, height=self.height))[None, None]
        else:
            arr = frame.to_ndarray(format="rgb24", width=self.width, height=self.height)
            pixels = torch.from_numpy(arr).permute(2, 0, 1)[None]
        return torch.rot90(pixels, self.turns, dims=(2, 3)).contiguous() if self.turns else pixels


def _geometry(src: str | Path) -> _Geometry:
    """The :class:`_Geometry` of ``src``'s video (:func:`open_video`'s stream): the display matrix is read from the
    first frame, which carries the stream's (a look at the file's start; decoding errors are left to
    :func:`_demux`). Rotations are taken to the nearest quarter turn; a mirroring in the matrix is not applied."""
    import av

    container, first, _ = open_video(src)
    width, height = first.codec_context.width, first.codec_context.height
    try:
        for frame in container.decode(first):
            return _Geometry(width, height, round(frame.rotation / 90) % 4)
    except av.FFmpegError:
        pass
    finally:
        container.close()
    return _Geometry(width, height)


class _PlainProgress:
    """Without a terminal (logs, pipes): a whole line every ``seconds`` instead of a carriage-return bar."""

    def __init__(self, total: int | None, *, enabled: bool, seconds: float = 10.0):
        self.total, self.enabled, self.seconds = total, enabled, seconds
        self.done, self.start = 0, time.monotonic()
        self.last = self.start

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.last >= self.seconds:
            of = f"/{self.total}" if self.total else ""
            print(f"progress: {self.done}{of} frames, {now - self.start:.0f} s", file=sys.stderr, flush=True)
            self.last = now


def _show_progress(progress: bool | None) -> bool:
    return os.environ.get("COLORIZE_NO_PROGRESS") != "1" if progress is None else progress


def colorize_video(src: str | Path, dst: str | Path, colorizer: Colorizer, *, temporal: bool = True,
                   batch_size: int = 8, report: bool = False, config: TemporalConfig | None = None,
                   progress: bool | None = None, hints: dict[int, list[Hint]] | None = None,
                   torch_threads: int | None = 1) -> dict[str, Any]:
    """Colorize a video: same frame count, size, rate and timestamps; every audio track copied (or re-encoded to AAC).

    The output is written to a temp file beside ``dst`` and renamed at the end, so an error or an
    interrupt never leaves a broken ``dst``.

    Args:
        src: input video.
        dst: output video; its extension picks the container (.mp4, .mkv, .mov, .webm, .avi).
        colorizer: the pipeline to run every frame through.
        temporal: carry colors along the motion (False: every frame on its own).
        batch_size: frames per network call.
        report: also measure flicker when ``temporal`` is off (costs the optical flow).
        config: temporal blending settings (default: :class:`TemporalConfig`).
        progress: show a progress bar (None: unless ``COLORIZE_NO_PROGRESS=1``).
        hints: {frame index (0-based): color hints in that frame's pixels}; each applies to its frame's
            shot, carried along the motion (:func:`track_hints`: a first pass over the video).
        torch_threads: torch's intra-op threads during the run, restored after (None: as they are). The
            pipeline's threads (network, smoother, composers, writer) keep the cores busy; one torch thread each
            spares the hand-offs and the spinning of idle threads that more would bring (measured: less CPU a
            frame, more frames/s).
    Returns:
        A summary: frames, width, height, fps, duration, audio, dropped (the input's streams not written: subtitles,
        data, a second video stream, attachments, audio without a decoder), damaged (the frames before which a
        damaged packet was skipped), tones (frames looked at, one a second, by kind: gray, toned, color), speed,
        predicted_frames (those the network colored), cuts, flicker, flicker_per_frame, flicker_ratio, chroma,
        chroma_per_frame (flicker in Lab ab units; None when not measured; flicker_per_frame needs two consecutive
        predicted frames).
    Raises:
        VideoError: naming the file and the reason, for unreadable input or unwritable output.
    """
    import av
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise VideoError(f"{dst}: the output would overwrite the input")
    check_output(dst)
    cfg = config or TemporalConfig()
    tracked: dict[int, list[Hint]] = {}
    if hints:
        tracked, _ = track_hints(src, colorizer, hints, config=cfg)
    smoother = TemporalSmoother(cfg, enabled=temporal, measure=temporal or report)
    # which frames the network colors (the network thread asks, in order); without the temporal blend, every one
    plan = KeyframePlan(cfg.keyframe_interval, cut_threshold=cfg.cut_threshold, always=tracked) if temporal else None
    geometry = _geometry(src)
    width, height = geometry.shown
    inp, vin, ains = open_video(src)
    dropped = dropped_streams(inp, [vin, *ains])  # subtitles, data (timecodes), a second picture, fonts
    damaged: list[int] = []  # frames that an undecodable packet came before (skipped)
    # a film already in color is colorized from its lightness, as a photo is, and said so: a frame a second is looked at
    tones: Counter[str] = Counter()
    tone_every, decoded = max(1, round(float(_frame_rate(vin)))), 0
    start = time.perf_counter()
    try:
        # the temporary has dst's extension: FFmpeg picks the container by it
        with _torch_threads(torch_threads), AtomicFile(dst, suffix=dst.suffix) as tmp:
            out, vout, tracks = _open_output(tmp, dst, vin, ains, geometry, film_tags(inp))
            try:
                audio_mode = "; ".join(f"copied ({a.codec_context.name})" if tracks[a.index][1] else
                                       f"re-encoded to {tracks[a.index][0].name}" for a in ains) or "none"
                show = _show_progress(progress)
                bar = tqdm(total=vin.frames or None, unit="frame", dynamic_ncols=True,
                           disable=not show or not sys.stderr.isatty())
                plain = _PlainProgress(vin.frames, enabled=show and not sys.stderr.isatty())
                batch: list[av.VideoFrame] = []
                # threads side by side (torch, OpenCV, onnxruntime and FFmpeg let go of the GIL): the network thread
                # prepares and predicts the next batch; this one decodes and carries colors along the motion (in
                # order: each frame needs the one before); two composers compose frames at full resolution, side by
                # side; the writer encodes and muxes, in order (audio packets go through it too: one thread muxes)
                network = ThreadPoolExecutor(1, thread_name_prefix="colorize-network")
                composers = ThreadPoolExecutor(COMPOSERS, thread_name_prefix="colorize-compose")
                writer = _Writer(out, depth=2 * batch_size, progress=lambda n: (bar.update(n), plain.update(n)))
                pending: tuple[list[av.VideoFrame], Future] | None = None

                def flush() -> None:  # send the batch to the network, then smooth the previous one
                    nonlocal pending
                    sent = None
                    if batch:
                        frames = batch.copy()
                        batch.clear()
                        sent = (frames, network.submit(_predict_batch, frames, colorizer, geometry, plan))
                    if pending is not None:
                        frames, future = pending
                        smoothed = _smooth_batch(*future.result(), colorizer, smoother, tracked)
                        for frame, (prep, ab) in zip(frames, smoothed, strict=True):
                            rgb = composers.submit(_compose_frame, prep, ab, colorizer)
                            writer.put(_finish_frame, frame, rgb, vout, frames=1)
                    pending = sent

                with bar:
                    try:
                        for item in _demux(src, inp, vin, ains, damaged):
                            if isinstance(item, av.VideoFrame):
                                if decoded % tone_every == 0:
                                    tones[_tone(item)] += 1
                                decoded += 1
                                batch.append(item)
                                if len(batch) == batch_size:
                                    flush()
                            else:
                                writer.put(_audio_packets, item, *tracks[item.stream.index])
                        while batch or pending is not None:
                            flush()
                        writer.put(vout.encode, None)  # the encoder's delayed frames
                        for aout, copied in tracks.values():
                            if not copied:
                                writer.put(aout.encode, None)
                        writer.join()
                    finally:
                        network.shutdown(cancel_futures=True)  # on an error: no batch starts after it
                        composers.shutdown(cancel_futures=True)
                        writer.close()
            except BaseException:
                with contextlib.suppress(Exception):  # the first error is the one worth reporting
                    out.close()
                raise
            out.close()
    except av.FFmpegError as e:  # encoding or muxing refused (a disk's error is an OSError: the caller names it)
        if isinstance(e, OSError):
            raise
        raise VideoError(f"{dst}: cannot write the video ({e})") from e
    finally:
        inp.close()
    seconds = time.perf_counter() - start
    frames = smoother.stats.frames
    rate = vin.average_rate or vin.guessed_rate
    result: dict[str, Any] = {
        "input": str(src), "output": str(dst), "model": colorizer.model_name, "working_size": colorizer.size,
        "frames": frames, "width": width, "height": height, "fps": float(rate) if rate else None,
        "duration": _stream_duration(vin),
        "audio": audio_mode, "dropped": dropped, "damaged": damaged, "temporal": temporal, "seconds": seconds,
        "frames_per_second": frames / seconds if seconds > 0 else None,
        "temporal_config": asdict(cfg),
        "hints": sum(len(v) for v in (hints or {}).values()), "frames_with_hints": len(tracked),
        "tones": dict(tones),
    }
    result.update(smoother.stats.summary())  # measurements are None when nothing was measured
    return result


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (None: unchanged) inside the block, restored after."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(before)


def _predict_batch(frames: list[av.VideoFrame], colorizer: Colorizer, geometry: _Geometry,
                   plan: KeyframePlan | None = None) -> tuple[list[Prepared], list[torch.Tensor | None]]:
    """prepare -> one batched predict of the keyframes among ``frames`` (``plan``; None: every frame): their
    Prepared, and the (2, h, w) ab of each keyframe (None for the others)."""
    prepared = [colorizer.prepare(geometry.pixels(f)) for f in frames]
    keys = [plan is None or plan(p.l_small[0, 0].cpu().numpy()) for p in prepared]
    if not any(keys):
        return prepared, [None] * len(prepared)
    ab = iter(colorizer.predict(torch.cat([p.l_small for p, key in zip(prepared, keys) if key])))
    return prepared, [next(ab) if key else None for key in keys]


def _smooth_batch(prepared: list[Prepared], ab_small: list[torch.Tensor | None], colorizer: Colorizer,
                  smoother: TemporalSmoother, hints: dict[int, list[Hint]] | None = None
                  ) -> Iterator[tuple[Prepared, torch.Tensor]]:
    """hints -> temporal blend, for the frames of one :func:`_predict_batch`, in order: (Prepared, the (1, 2, h, w)
    ab to compose) for each. A frame between keyframes is predicted here if the smoother cannot carry one to it."""
    for prep, pred in zip(prepared, ab_small, strict=True):
        frame_hints = (hints or {}).get(smoother.stats.frames)  # this frame's index in the video

        def own(pred: torch.Tensor | None = pred, prep: Prepared = prep, frame_hints=frame_hints) -> np.ndarray:
            """The frame's own prediction, with its hints, as (h, w, 2) numpy."""
            ab = colorizer.predict(prep.l_small) if pred is None else pred[None]
            if frame_hints:
                ab = colorizer.with_hints(prep, ab, frame_hints)
            return ab[0].permute(1, 2, 0).cpu().numpy()

        l = prep.l_small[0, 0].cpu().numpy()
        ab = smoother(l, None if pred is None else own(), predict=own)
        yield prep, torch.from_numpy(np.ascontiguousarray(ab)).permute(2, 0, 1)[None].to(colorizer.device)


def _audio_packets(packet: av.Packet, aout: av.AudioStream, copied: bool) -> Iterable[av.Packet]:
    """An input audio packet -> the output track's packets: itself, moved to the track, or re-encoded."""
    if copied:
        packet.stream = aout
        return (packet,)
    return [p for frame in packet.decode() for p in aout.encode(frame)]


def _tone(frame: av.VideoFrame) -> str:
    """Whether a decoded frame is gray, toned or color (:func:`colorize.tone.classify`); a frame coded without
    chroma is gray without a look."""
    from colorize.tone import classify

    return "gray" if _is_gray(frame) else classify(frame.to_ndarray(format="rgb24")).kind


def _compose_frame(prep: Prepared, ab: torch.Tensor, colorizer: Colorizer) -> np.ndarray:
    """compose, for one frame of :func:`_smooth_batch`: the (H, W, 3) uint8 RGB frame."""
    rgb = colorizer.compose(prep, ab, uint8=True)  # (1, 3, H, W) uint8, laid out (H, W, 3)
    return rgb[0].permute(1, 2, 0).contiguous().cpu().numpy()


def _finish_frame(frame: av.VideoFrame, rgb: Future, vout: av.VideoStream) -> list[av.Packet]:
    """encode, for one frame whose :func:`_compose_frame` is ``rgb``, with the input frame's timing and YUV matrix."""
    import av

    new = av.VideoFrame.from_ndarray(rgb.result(), format="rgb24")
    new.pts, new.time_base, new.duration = frame.pts, frame.time_base, frame.duration
    new.colorspace = frame.colorspace  # encode with the input's YUV matrix
    return vout.encode(new)


class _Writer:
    """One thread that runs ``work(*args) -> packets`` for each :meth:`put`, in order, and muxes the packets: the
    full-resolution end of the pipeline beside the rest. At most ``depth`` items wait (memory stays flat); the
    writer's first error is raised by the next :meth:`put` or :meth:`join`, and no work runs after it."""

    def __init__(self, out: av.container.OutputContainer, *, depth: int, progress: Callable[[int], Any]):
        self.out, self.depth, self.progress = out, max(2, depth), progress
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="colorize-writer")
        self.queue: deque[tuple[Future, int]] = deque()
        self.failed = False

    def _run(self, work: Callable[..., Iterable[av.Packet]], args: tuple) -> None:
        if self.failed:
            return
        try:
            for packet in work(*args):
                self.out.mux(packet)
        except BaseException:
            self.failed = True
            raise

    def _reap(self) -> None:
        future, frames = self.queue.popleft()
        future.result()
        if frames:
            self.progress(frames)

    def put(self, work: Callable[..., Iterable[av.Packet]], *args: Any, frames: int = 0) -> None:
        """Queue ``work(*args)``; ``frames``: how many video frames it finishes (for the progress bar)."""
        while self.queue and (self.queue[0][0].done() or len(self.queue) >= self.depth):
            self._reap()
        self.queue.append((self.pool.submit(self._run, work, args), frames))

    def join(self) -> None:
        """Wait for everything queued."""
        while self.queue:
            self._reap()

    def close(self) -> None:
        """Drop what has not started (after an error), wait for what has."""
        self.failed = True
        self.pool.shutdown(cancel_futures=True)


def _lab_frames(path: Path, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(L (h, w), normalized ab (h, w, 2)) of every frame of a video, at working size ``size``."""
    geometry = _geometry(path)
    container, video, _ = open_video(path)
    h, w = working_shape(*reversed(geometry.shown), size, 1)
    try:
        for frame in _demux(path, container, video):
            rgb = F.interpolate(geometry.pixels(frame).expand(-1, 3, -1, -1).float().div_(255), size=(h, w),
                                mode="area")
            lab = rgb_to_lab(rgb)[0]  # (3, h, w)
            yield lab[0].numpy(), normalize_ab(lab[1:]).permute(1, 2, 0).numpy()
    finally:
        container.close()


def video_flicker(path: str | Path, *, gray: str | Path | None = None, size: int = 256) -> dict[str, Any]:
    """Measure a finished video's flicker: the mean ab change (Lab units) between consecutive frames
    after following the optical flow of the gray frames, at working size ``size`` (long side).

    Args:
        path: the colorized video.
        gray: the video it was made from, whose lightness gives the flow (default: ``path``'s own
            lightness, which chroma subsampling and compression disturb a little).
        size: working size for the flow.
    Returns:
        frames, cuts, flicker (lower is steadier) and chroma (mean |ab|).
    """
    # the finer flow: a meter's accuracy is worth its cost, and its readings stay comparable over time
    meter = TemporalSmoother(TemporalConfig(flow="medium"), enabled=False, measure=True)
    frames = _lab_frames(Path(path), size)
    if gray is None:
        for l, ab in frames:
            meter(l, ab)
    else:
        for (l, _), (_, ab) in zip(_lab_frames(Path(gray), size), frames, strict=True):
            meter(l, ab)
    stats = meter.stats.summary()
    return {"frames": meter.stats.frames, "cuts": stats["cuts"], "flicker": stats["flicker_per_frame"],
            "chroma": stats["chroma_per_frame"]}
