"""colorize video: format preservation, audio, temporal consistency, scene cuts, bad input, interrupts.

Clips are generated here with PyAV: 96x64, 24 frames at 24 fps, a camera pan over one synthetic
photo, then a cut to a zoom into another one.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import make_photo
from PIL import Image

from colorize.cli import main as cli_main
from colorize.pipeline import Colorizer
from colorize.temporal import (KeyframePlan, Motion, TemporalConfig, TemporalSmoother, blend, estimate_motion,
                               flicker, histogram_distance, is_scene_cut, optical_flow, warp)
from colorize.video import VideoError, colorize_video, video_flicker

av = pytest.importorskip("av")
pytest.importorskip("cv2")

W, H, FRAMES, FPS, CUT = 96, 64, 24, 24, 12


def clip_frames(width: int = W, height: int = H, frames: int = FRAMES) -> list[np.ndarray]:
    """(H, W, 3) uint8 frames: a pan over one photo, then (from frame CUT) a zoom into another."""
    pan_src = np.block([[[np.asarray(make_photo(width, height, seed=3 * r + c))] for c in range(3)]
                        for r in range(3)])  # (3H, 3W, 3): a 3x3 mosaic of photos, structure everywhere
    zoom_src = make_photo(2 * width, 2 * height, seed=5)
    out = []
    for i in range(frames):
        if i < CUT:
            x, y = 10 + 3 * i, 20 + i
            out.append(np.ascontiguousarray(pan_src[y:y + height, x:x + width]))
        else:
            s = 1.0 - 0.025 * (i - CUT)  # crop shrinks: zooming in
            cw, ch = 2 * width * s, 2 * height * s
            box = (width - cw / 2, height - ch / 2, width + cw / 2, height + ch / 2)
            out.append(np.asarray(zoom_src.resize((width, height), Image.BILINEAR, box=box)))
    return out


def write_clip(path: Path, *, audio: str | None = None, frames: int = FRAMES, rate: int = 16000,
               tags: dict[str, str] | None = None) -> Path:
    """Encode the test clip (H.264) with an optional 1 s sine audio track in codec ``audio`` at ``rate`` Hz, and the
    container ``tags``."""
    container = av.open(str(path), "w")
    container.metadata.update(tags or {})
    video = container.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = W, H, "yuv420p"
    video.options = {"crf": "10"}
    sound = None
    if audio is not None:
        sound = container.add_stream(audio, rate=rate, layout="mono")
    for arr in clip_frames(frames=frames):
        container.mux(video.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
    container.mux(video.encode(None))
    if sound is not None:
        t = np.arange(rate) / rate
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for k in range(0, rate, 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, k:k + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, k
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    container.close()
    return path


def probe(path: Path) -> dict:
    """What matters about a video file: frames, size, rate, durations, audio codec."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        info = {"size": (v.codec_context.width, v.codec_context.height), "rate": v.average_rate,
                "video_seconds": float(v.duration * v.time_base) if v.duration else c.duration / 1e6,
                "audio": a.codec_context.name if a else None,
                "audio_seconds": float(a.duration * a.time_base) if a and a.duration else None}
        info["frames"] = sum(1 for _ in c.decode(video=0))
    return info


class FlickeryNet(nn.Module):
    """Colors that follow the content, plus a fresh low-frequency color cast every frame: an
    unstable model, so that flicker is large and measurable."""

    stride = 8

    def __init__(self, cast: float = 0.12, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 2, 5, padding=2)
        self.cast = cast
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        b, _, h, w = l_norm.shape
        base = 0.35 * torch.tanh(3 * self.conv(l_norm))  # (B, 2, h, w) normalized ab
        noise = torch.randn(b, 2, max(1, h // 16), max(1, w // 16), generator=self.generator) * self.cast
        return base + F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)


class FailingNet(nn.Module):
    """Raises ``error`` on its second call: a crash (or Ctrl-C) in the middle of a video."""

    stride = 8

    def __init__(self, error: type[BaseException]):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.error, self.calls = error, 0

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 2:
            raise self.error("boom")
        return torch.tanh(self.conv(l_norm))


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.mp4", audio="aac")


# -- pure functions --------------------------------------------------------------------------------
def _texture(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """(h, w) L in [0, 100] with structure at several scales."""
    rgb = np.asarray(make_photo(w, h, seed=seed)).astype(np.float32) / 255
    return (rgb.mean(-1) * 100).astype(np.float32)


def test_optical_flow_recovers_a_shift_and_warp_follows_it():
    big = _texture(96, 144)
    prev, cur = big[10:74, 10:106], big[12:76, 15:111]  # content moves 5 px left, 2 px up
    flow = optical_flow(cur, prev)  # cur(x) ~ prev(x + flow)
    inner = flow[12:-12, 12:-12].reshape(-1, 2)
    assert np.allclose(np.median(inner, axis=0), [5, 2], atol=0.5)
    warped = warp(prev, flow)
    assert np.abs(warped - cur)[12:-12, 12:-12].mean() < 2.0


def test_flow_confidence_high_for_motion_low_for_unrelated_frames():
    big = _texture(96, 144)
    moved = estimate_motion(big[10:74, 10:106], big[12:76, 15:111])
    unrelated = estimate_motion(big[10:74, 10:106], _texture(seed=9))
    assert moved.confidence[12:-12, 12:-12].mean() > 0.6
    assert unrelated.confidence.mean() < 0.3
    assert moved.confidence[:, -3:].mean() < 0.2  # content entering at the right edge has no past


def test_blend_and_flicker():
    pred, past = np.full((8, 8, 2), 0.2, np.float32), np.full((8, 8, 2), -0.2, np.float32)
    assert np.allclose(blend(pred, past, np.zeros((8, 8)), alpha=0.8), pred)
    assert np.allclose(blend(pred, past, np.ones((8, 8)), alpha=0.5), 0.0)
    still = Motion(np.zeros((8, 8, 2), np.float32), np.ones((8, 8), np.float32))
    assert flicker(pred, pred, still) == 0.0
    assert flicker(pred, past, still) == pytest.approx(0.4 * np.sqrt(2) * 128, rel=1e-5)


def test_scene_cut_detection_on_the_clip():
    l = [(f.astype(np.float32).mean(-1) / 2.55) for f in clip_frames()]
    dist = [histogram_distance(a, b) for a, b in zip(l[:-1], l[1:], strict=True)]
    cuts = [i + 1 for i, (a, b) in enumerate(zip(l[:-1], l[1:], strict=True)) if is_scene_cut(a, b)]
    within = max(dist[:CUT - 1] + dist[CUT:])
    print(f"histogram distances: max within shots {within:.3f}, at the cut {dist[CUT - 1]:.3f}")
    assert cuts == [CUT]


def test_temporal_config_validation():
    with pytest.raises(ValueError, match="alpha"):
        TemporalConfig(alpha=1.0)
    with pytest.raises(ValueError, match="cut_threshold"):
        TemporalConfig(cut_threshold=2)
    with pytest.raises(ValueError, match="ultrafast, fast, medium"):
        TemporalConfig(flow="slow")
    with pytest.raises(ValueError, match="keyframe_interval"):
        TemporalConfig(keyframe_interval=0)


def test_keyframe_plan_every_nth_frame_restarting_at_cuts_and_hinted_frames():
    l = [(f.astype(np.float32).mean(-1) / 2.55) for f in clip_frames()]
    keys = lambda plan: [i for i, frame in enumerate(l) if plan(frame)]  # noqa: E731
    assert keys(KeyframePlan(1)) == list(range(FRAMES))
    assert keys(KeyframePlan(2)) == list(range(0, CUT, 2)) + list(range(CUT, FRAMES, 2))
    assert keys(KeyframePlan(5)) == [0, 5, 10, CUT, CUT + 5, CUT + 10]  # the cut starts a new count
    assert keys(KeyframePlan(5, always={3})) == [0, 3, 8, CUT, CUT + 5, CUT + 10]
    with pytest.raises(ValueError, match="interval"):
        KeyframePlan(0)


# -- whole videos ----------------------------------------------------------------------------------
def test_video_keeps_frames_size_rate_duration_and_audio(clip, tmp_path, tiny_model_file):
    out = tmp_path / "out" / "color.mp4"
    summary = colorize_video(clip, out, Colorizer(tiny_model_file), batch_size=5)
    src, dst = probe(clip), probe(out)
    assert dst["frames"] == src["frames"] == FRAMES
    assert dst["size"] == (W, H) and dst["rate"] == src["rate"] == FPS
    assert dst["video_seconds"] == pytest.approx(src["video_seconds"], abs=1e-3)
    assert dst["audio"] == "aac" and summary["audio"] == "copied (aac)"
    assert dst["audio_seconds"] == pytest.approx(src["audio_seconds"], abs=0.01)
    assert summary["frames"] == FRAMES and summary["cuts"] == [CUT]
    assert [p.name for p in out.parent.iterdir()] == ["color.mp4"]  # no temp file left behind
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32)
    assert np.abs(frame[..., 0] - frame[..., 1]).mean() > 5  # colorized, not gray


@pytest.mark.parametrize("ext", ["mp4", "mkv", "mov"])
def test_a_films_title_date_and_rights_are_kept_and_it_says_it_was_colorized(tmp_path, tiny_model_file, ext):
    """The container's title, date and copyright reach the colorized film (they used to be dropped), with a comment
    saying it was colorized, after the film's own."""
    from colorize import __version__

    tagged = write_clip(tmp_path / f"reel.{ext}", frames=6, tags={
        "title": "Brighton, 1931", "date": "1931", "copyright": "Smith family archive", "comment": "reel 3 of 5"})
    dst = tmp_path / f"color.{ext}"
    colorize_video(tagged, dst, Colorizer(tiny_model_file), temporal=False)
    with av.open(str(dst)) as c:
        tags = {k.lower(): v for k, v in c.metadata.items()}
    assert tags["title"] == "Brighton, 1931" and tags["date"].startswith("1931")
    assert tags["copyright"] == "Smith family archive"
    assert tags["comment"].startswith("reel 3 of 5. Colorized by colorize " + __version__)


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path, tiny_model_file):
    clip = write_clip(tmp_path / "clip.mov", audio="pcm_mulaw")
    out = tmp_path / "color.mp4"
    summary = colorize_video(clip, out, Colorizer(tiny_model_file), temporal=False)
    info = probe(out)
    assert summary["audio"] == "re-encoded to aac" and info["audio"] == "aac"
    assert info["audio_seconds"] == pytest.approx(1.0, abs=0.1)
    assert info["frames"] == FRAMES and summary["flicker"] is None  # nothing measured without temporal/report


def test_every_audio_track_is_kept_with_its_language(tmp_path, tiny_model_file):
    """A film with its original sound and a dub (or a commentary): both tracks come out, each still named."""
    src = tmp_path / "dubbed.mkv"
    with av.open(str(src), "w") as c:
        video = c.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        tracks = [c.add_stream(codec, rate=16000, layout="mono") for codec in ("aac", "libopus")]
        tracks[1].metadata["language"] = "fra"
        for arr in clip_frames(frames=12):
            c.mux(video.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        c.mux(video.encode(None))
        for track in tracks:
            for k in range(0, 8000, 960):
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
                frame.sample_rate, frame.pts = 16000, k
                c.mux(track.encode(frame))
            c.mux(track.encode(None))
    for out, audio in [(tmp_path / "color.mkv", "copied (aac); copied (opus)"),
                       (tmp_path / "color.mov", "re-encoded to aac; re-encoded to aac")]:  # .mov takes no Opus
        summary = colorize_video(src, out, Colorizer(tiny_model_file), temporal=False)
        with av.open(str(out)) as c:
            kept = [(s.codec_context.name, s.metadata.get("language")) for s in c.streams.audio]
        assert summary["audio"] == audio and len(kept) == 2 and kept[1][1] == "fra", kept


def test_streams_that_are_not_copied_are_named(tmp_path, tiny_model_file, capsys):
    """Subtitles (and data, fonts...) were dropped from the output without a word."""
    (tmp_path / "film.srt").write_text("1\n00:00:00,000 --> 00:00:00,200\nhello\n")
    src = tmp_path / "film.mkv"
    with av.open(str(tmp_path / "film.srt")) as srt, av.open(str(src), "w") as c:
        video = c.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        subtitles = c.add_stream_from_template(srt.streams.subtitles[0])
        subtitles.metadata["language"] = "eng"
        for arr in clip_frames(frames=6):
            c.mux(video.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        c.mux(video.encode(None))
        for packet in srt.demux(srt.streams.subtitles[0]):
            if packet.size:
                packet.stream = subtitles
                c.mux(packet)
    out = tmp_path / "color.mkv"
    assert cli_main(["video", str(src), "-o", str(out), "--model", str(tiny_model_file), "-q"]) == 0
    assert f"warning: {src}: not copied (only the picture and the sound are written): subtitle #1 (" in \
        capsys.readouterr().err
    assert colorize_video(write_clip(tmp_path / "clip.mp4", audio="aac", frames=6), tmp_path / "b.mp4",
                          Colorizer(tiny_model_file), temporal=False)["dropped"] == []


def test_a_film_already_in_color_is_said_to_be(clip, tmp_path, tiny_model_file, capsys):
    """As a photo in color is: colorized from its lightness, with a warning; a gray film gets none."""
    args = ["--model", str(tiny_model_file), "-q"]
    assert cli_main(["video", str(clip), "-o", str(tmp_path / "a.mp4"), *args]) == 0  # the test clip is in color
    assert f"warning: {clip}: already in color (1 of the 1 frames looked at" in capsys.readouterr().err
    gray = tmp_path / "gray.mp4"
    with av.open(str(gray), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for arr in clip_frames(frames=FRAMES + 6):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr.mean(-1).astype(np.uint8)),
                                                      format="gray")))
        c.mux(s.encode(None))
    summary = colorize_video(gray, tmp_path / "b.mp4", Colorizer(tiny_model_file), temporal=False)
    assert summary["tones"] == {"gray": 2}  # frames 0 and 24: one a second


def test_the_summary_gives_a_matroska_films_duration(tmp_path, tiny_model_file):
    """.mkv and .webm keep a stream's length in a tag, not in its header field: the report says it all the same."""
    summary = colorize_video(write_clip(tmp_path / "film.mkv"), tmp_path / "color.mp4", Colorizer(tiny_model_file),
                             temporal=False)
    assert summary["duration"] == pytest.approx(FRAMES / FPS, abs=1e-3)


def test_audio_the_container_refuses_only_at_its_header_is_reencoded(tmp_path, tiny_model_file):
    """.mov takes an Opus stream when it is added and refuses it when the header is written: re-encoded too."""
    clip = write_clip(tmp_path / "clip.mkv", audio="libopus")
    out = tmp_path / "color.mov"
    summary = colorize_video(clip, out, Colorizer(tiny_model_file), temporal=False)
    info = probe(out)
    assert summary["audio"] == "re-encoded to aac" and info["audio"] == "aac" and info["frames"] == FRAMES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv", "color.mov"]


@pytest.mark.parametrize("name, audio, rate", [("clip.mp4", "aac", 16000), ("clip.mkv", "pcm_s16le", 8000)])
def test_an_mpeg_program_stream_gets_its_audio_as_mp2(name, audio, rate, tmp_path, tiny_model_file):
    """.mpg (MPEG-PS) takes MPEG audio only, at 16 to 48 kHz: a film with AAC sound failed with 'Invalid argument'."""
    clip = write_clip(tmp_path / name, audio=audio, frames=6, rate=rate)
    out = tmp_path / "color.mpg"
    summary = colorize_video(clip, out, Colorizer(tiny_model_file), temporal=False)
    info = probe(out)
    assert summary["audio"] == "re-encoded to mp2" and info["audio"] == "mp2" and info["frames"] == 6
    assert info["audio_seconds"] == pytest.approx(1.0, abs=0.1)


def test_a_container_without_its_video_encoder_is_refused_before_the_work(clip, tmp_path, tiny_model_file,
                                                                          monkeypatch, capsys):
    """.ogv takes Theora only, which FFmpeg builds often lack: it failed with 'Invalid argument' after the film."""
    import colorize.video as video

    if av.codec.codecs_available & {"libtheora"}:
        monkeypatch.setitem(video.ENCODERS, ".ogv", ("no-such-encoder",))
    monkeypatch.setattr(video, "open_video", lambda *a: pytest.fail("the film was opened"))
    assert cli_main(["video", str(clip), "-o", str(tmp_path / "film.ogv"), "--model", str(tiny_model_file)]) == 1
    err = capsys.readouterr().err
    assert "film.ogv: '.ogv' files need the" in err and ".mp4, .mkv" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_temporal_consistency_reduces_flicker_and_keeps_color(clip, tmp_path):
    colorizer = Colorizer(FlickeryNet())
    # the network on every frame: the in-run per-frame flicker is measured beside the output's
    steady = colorize_video(clip, tmp_path / "steady.mp4", colorizer, config=TemporalConfig(keyframe_interval=1))
    per_frame = colorize_video(clip, tmp_path / "per_frame.mp4", colorizer, temporal=False, report=True)
    measured_steady = video_flicker(tmp_path / "steady.mp4", gray=clip)
    measured_per_frame = video_flicker(tmp_path / "per_frame.mp4", gray=clip)
    ratio = measured_steady["flicker"] / measured_per_frame["flicker"]
    chroma_ratio = measured_steady["chroma"] / measured_per_frame["chroma"]
    print(f"flicker on the output files: temporal {measured_steady['flicker']:.2f}, per-frame "
          f"{measured_per_frame['flicker']:.2f}, ratio {ratio:.2f}; chroma ratio {chroma_ratio:.2f}; "
          f"in-run ratio {steady['flicker_ratio']:.2f}")
    assert ratio < 0.7
    assert steady["flicker_ratio"] < 0.7
    assert chroma_ratio > 0.8 and steady["chroma"] > 0.8 * steady["chroma_per_frame"]
    assert per_frame["flicker_ratio"] == pytest.approx(1.0)
    assert steady["cuts"] == per_frame["cuts"] == measured_steady["cuts"] == [CUT]
    assert steady["predicted_frames"] == per_frame["predicted_frames"] == FRAMES


class CountingNet(FlickeryNet):
    """:class:`FlickeryNet` that counts the frames it colors."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.frames = 0

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        self.frames += l_norm.shape[0]
        return super().forward(l_norm)


def test_keyframes_the_network_colors_every_other_frame_and_the_rest_follow_the_motion(clip, tmp_path):
    """By default the network sees the first frame of each shot and every second one after it; the frames between
    carry its colors along the motion: about half the network's work, as steady as the network on every frame, the
    same color, and every frame still its own (the cut is not smeared)."""
    net = CountingNet()
    keyed = colorize_video(clip, tmp_path / "keyed.mp4", Colorizer(net))
    assert net.frames == keyed["predicted_frames"] == FRAMES // 2  # 0, 2, .., 10 and 12 (the cut), 14, .., 22
    net.frames = 0
    every = colorize_video(clip, tmp_path / "every.mp4", Colorizer(net), config=TemporalConfig(keyframe_interval=1))
    assert net.frames == every["predicted_frames"] == FRAMES
    m_keyed, m_every = (video_flicker(tmp_path / f"{n}.mp4", gray=clip) for n in ("keyed", "every"))
    print(f"keyframes every 2nd frame: flicker {m_keyed['flicker']:.2f}, chroma {m_keyed['chroma']:.1f}; "
          f"every frame: {m_every['flicker']:.2f}, {m_every['chroma']:.1f}")
    assert m_keyed["flicker"] <= 1.1 * m_every["flicker"]
    assert m_keyed["chroma"] == pytest.approx(m_every["chroma"], rel=0.15)
    assert keyed["cuts"] == m_keyed["cuts"] == [CUT] and keyed["flicker_per_frame"] is None  # nothing to compare
    # the cut is a keyframe: its colors are the new shot's own prediction, nothing carried over
    steady = Colorizer(FlickeryNet(cast=0.0))
    colorize_video(clip, tmp_path / "cut.mp4", steady)
    with av.open(str(clip)) as c:
        expected = steady.colorize_uint8([f for i, f in enumerate(c.decode(video=0)) if i == CUT][0].to_ndarray(
            format="rgb24")).astype(np.float32)
    with av.open(str(tmp_path / "cut.mp4")) as c:
        got = [f for i, f in enumerate(c.decode(video=0)) if i == CUT][0].to_ndarray(format="rgb24").astype(np.float32)
    assert np.abs(got - expected).mean() < 3.0  # H.264 at crf 18


def test_a_frame_between_keyframes_is_predicted_where_the_motion_is_lost():
    """A frame the plan skipped but whose motion the smoother cannot follow (a cut the plan did not see, the flow
    lost) gets its own prediction through ``predict``: never a stale color from another shot."""
    smoother = TemporalSmoother()
    a, b = _texture(seed=1), _texture(seed=5) * 0.3
    red, blue = np.full((64, 96, 2), 0.3, np.float32), np.full((64, 96, 2), -0.3, np.float32)
    smoother(a, red)
    carried = smoother(a, None)  # the same view: the last prediction carried (nothing called)
    assert np.allclose(carried, red, atol=1e-5)
    calls = []
    assert np.allclose(smoother(b, None, predict=lambda: calls.append(1) or blue), blue) and calls == [1]
    assert smoother.stats.predicted == 2 and smoother.stats.frames == 3
    with pytest.raises(ValueError, match="predict"):
        TemporalSmoother()(a, None)


def test_frames_come_out_in_order_whatever_the_batching(clip, tmp_path):
    """The network runs a batch ahead of the composing and encoding: every output frame is still its own
    input frame colorized, in order, for any batch size."""
    colorizer = Colorizer(FlickeryNet(cast=0.0))  # colors follow the content: frames tell apart
    with av.open(str(clip)) as c:
        expected = [colorizer.colorize_uint8(f.to_ndarray(format="rgb24")).astype(np.float32)
                    for f in c.decode(video=0)]
    for batch_size in (1, 5, FRAMES + 1):
        out = tmp_path / f"b{batch_size}.mp4"
        colorize_video(clip, out, colorizer, temporal=False, batch_size=batch_size)
        with av.open(str(out)) as c:
            got = [f.to_ndarray(format="rgb24").astype(np.float32) for f in c.decode(video=0)]
        assert len(got) == FRAMES
        for i, frame in enumerate(got):
            errors = [float(np.abs(frame - e).mean()) for e in expected]
            assert int(np.argmin(errors)) == i and errors[i] < 5.0, (batch_size, i, errors[i])


def test_smoother_restarts_at_a_cut():
    smoother = TemporalSmoother()
    a, b = _texture(seed=1), _texture(seed=5) * 0.3  # a darker, different shot
    red, blue = np.full((64, 96, 2), 0.3, np.float32), np.full((64, 96, 2), -0.3, np.float32)
    smoother(a, red)
    assert np.allclose(smoother(a, red), red)
    assert np.allclose(smoother(b, blue), blue)  # nothing of the previous shot leaks in
    assert smoother.stats.cuts == [2]


# -- bad input, interrupts and the command ---------------------------------------------------------
def _truncated(tmp_path: Path) -> Path:
    full = write_clip(tmp_path / "full.mkv")
    data = full.read_bytes()
    bad = tmp_path / "truncated.mkv"
    bad.write_bytes(data[: len(data) // 2])
    return bad


def _no_moov(tmp_path: Path) -> Path:
    data = write_clip(tmp_path / "full.mp4").read_bytes()
    bad = tmp_path / "cut_short.mp4"
    bad.write_bytes(data[: len(data) // 2])  # the index is written last: it is gone
    return bad


def _cut_from_the_middle(tmp_path: Path) -> Path:
    """An MPEG-TS recording whose start, with the one keyframe and the stream's parameters, is gone."""
    data = write_clip(tmp_path / "full.ts").read_bytes()
    bad = tmp_path / "recording.ts"
    bad.write_bytes(data[len(data) // 2 // 188 * 188:])  # whole 188-byte TS packets
    return bad


def _audio_only(tmp_path: Path) -> Path:
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000, layout="mono")
        for k in range(0, 8192, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 16000, k
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    return path


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "films").mkdir()
    return tmp_path / "films"


@pytest.mark.parametrize("make_bad, reason", [
    (_text, "not a readable video"),
    (_no_moov, "not a readable video"),
    (_truncated, "truncated"),
    (_cut_from_the_middle, "no decodable video frames"),
    (_audio_only, "no video stream"),
    (lambda tmp: tmp / "missing.mp4", "no such file"),
    (_folder, "a folder, not a video file"),  # it was 'no such file' for a folder that is there
])
def test_bad_input_raises_a_clear_error(make_bad, reason, tmp_path, tiny_model_file, capsys):
    bad = make_bad(tmp_path)
    out = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match=reason) as err:
        colorize_video(bad, out, Colorizer(tiny_model_file))
    assert str(bad) in str(err.value)
    assert cli_main(["video", str(bad), "-o", str(out), "--model", str(tiny_model_file), "-q"]) == 1
    assert str(bad) in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def _damaged(path: Path, bad: set[int]) -> Path:
    """The test clip with the payload of the video packets numbered in ``bad`` overwritten (a scratch in the file)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        packets = [p for arr in clip_frames() for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24"))]
        for i, p in enumerate(packets + list(s.encode(None))):
            if i in bad:
                scratched = av.Packet(bytes(p)[:4] + b"\xff" * (p.size - 4))  # the NAL length kept, its content gone
                scratched.pts, scratched.dts, scratched.time_base, scratched.stream = p.pts, p.dts, p.time_base, s
                p = scratched
            c.mux(p)
    return path


def test_a_damaged_packet_is_skipped_with_a_warning(tmp_path, tiny_model_file, capsys):
    """One undecodable packet in an old digitized film costs its frame, not the film."""
    src, out = _damaged(tmp_path / "scratched.mp4", {10}), tmp_path / "color.mp4"
    assert cli_main(["video", str(src), "-o", str(out), "--model", str(tiny_model_file), "-q"]) == 0
    assert "1 damaged video packet(s) could not be decoded and were skipped" in capsys.readouterr().err
    info = probe(out)
    assert info["frames"] == FRAMES - 1
    assert info["video_seconds"] == pytest.approx(FRAMES / FPS, abs=1 / FPS + 1e-3)  # in step with the sound
    with pytest.raises(VideoError, match=r"\d+ of its 24 video packets cannot be decoded"):  # mostly damaged: refused
        colorize_video(_damaged(tmp_path / "ruined.mp4", set(range(8, 24))), out, Colorizer(tiny_model_file))


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_run_leaves_no_output(clip, tmp_path, error):
    out = tmp_path / "out.mp4"
    with pytest.raises(error):
        colorize_video(clip, out, Colorizer(FailingNet(error)), batch_size=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_the_temporary_of_a_killed_run_is_removed_by_the_next_one(clip, tmp_path, tiny_model_file, capsys):
    """``kill -9`` (or a power cut) leaves the hidden temporary, as long as the film so far: the next run removes it
    once it is a minute old, and leaves a younger one (a run still writing it) alone."""
    import os
    import time

    out = tmp_path / "out" / "color.mp4"
    out.parent.mkdir()
    left, fresh = out.parent / ".color.mp4.k3j2_h1g.tmp.mp4", out.parent / ".other.mkv.abcdefgh.tmp.mkv"
    for path in (left, fresh):
        path.write_bytes(b"\0" * 1000)
    os.utime(left, (time.time() - 3600,) * 2)
    assert cli_main(["video", str(clip), "-o", str(out), "--model", str(tiny_model_file), "-q"]) == 0
    assert "removed 1 temporary file(s) left by an interrupted run" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == [fresh.name, "color.mp4"]


def test_command_report_and_json(clip, tmp_path, tiny_model_file, capsys):
    out, report = tmp_path / "out.mkv", tmp_path / "report.json"
    args = ["video", str(clip), "-o", str(out), "--model", str(tiny_model_file), "-q", "--report-json", str(report)]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "flicker:" in printed and "per-frame n/a" in printed and f"cuts:    {CUT}" in printed
    assert f"the network colored {FRAMES // 2} of {FRAMES} frames" in printed
    data = json.loads(report.read_text())
    assert data["frames"] == FRAMES and data["temporal"] and data["flicker"] > 0 and data["flicker_per_frame"] is None
    every = ["--keyframe-interval", "1", "--overwrite"]
    assert cli_main(args + every) == 0 and json.loads(report.read_text())["flicker_per_frame"] > 0
    assert f"colored {FRAMES} of {FRAMES} frames" in capsys.readouterr().out
    assert cli_main(args + ["--keyframe-interval", "0", "--overwrite"]) == 2
    assert "--keyframe-interval must be >= 1" in capsys.readouterr().err
    assert probe(out)["frames"] == FRAMES
    assert cli_main(args) == 2  # exists: not overwritten without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_the_json_report_goes_where_asked_or_says_why_not(clip, tmp_path, tiny_model_file, capsys):
    """Its folder is made; a folder given as the file is refused before the film, a path that cannot be written after
    it, by name, without a traceback."""
    args = ["video", str(clip), "--model", str(tiny_model_file), "-q", "--report-json"]
    assert cli_main([*args, str(tmp_path / "reports" / "r.json"), "-o", str(tmp_path / "a.mp4")]) == 0
    assert json.loads((tmp_path / "reports" / "r.json").read_text())["frames"] == FRAMES
    assert cli_main([*args, str(tmp_path / "reports"), "-o", str(tmp_path / "b.mp4")]) == 2
    assert "is a folder" in capsys.readouterr().err and not (tmp_path / "b.mp4").exists()
    (tmp_path / "file").write_text("")
    assert cli_main([*args, str(tmp_path / "file" / "r.json"), "-o", str(tmp_path / "c.mp4")]) == 1
    assert f"cannot write the report {tmp_path / 'file' / 'r.json'}" in capsys.readouterr().err


def test_rate_and_odd_size_are_kept(tmp_path, tiny_model_file):
    src = tmp_path / "odd.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(30000, 1001))
        s.width, s.height, s.pix_fmt = 33, 25, "yuv444p"
        for i in range(6):
            arr = np.full((25, 33, 3), 20 * i, np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        c.mux(s.encode(None))
    out = tmp_path / "odd_color.mp4"
    colorize_video(src, out, Colorizer(tiny_model_file))
    info = probe(out)
    assert info["size"] == (33, 25) and info["frames"] == 6 and info["rate"] == Fraction(30000, 1001)


def test_a_stream_without_timestamps_keeps_its_rate(tmp_path, tiny_model_file):
    """A raw .h264 (a Raspberry Pi's or a dashcam's elementary stream) has no timestamps: its frames are laid one
    after the other at its rate, not all at 0 s."""
    src = tmp_path / "camera.h264"
    with av.open(str(src), "w", format="h264") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for arr in clip_frames(frames=12):
            c.mux(s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        c.mux(s.encode(None))
    out = tmp_path / "color.mp4"
    colorize_video(src, out, Colorizer(tiny_model_file))
    with av.open(str(out)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert len(times) == 12
    assert np.diff(times) == pytest.approx(np.full(11, 1 / FPS), abs=1e-3)


@pytest.mark.parametrize("degrees, turns", [(90, 1), (-90, 3), (180, 2)])
def test_a_rotated_film_is_colorized_and_written_upright(degrees, turns, tmp_path, tiny_model_file):
    """A phone films portrait as landscape frames plus a display matrix: the output shows what the input showed."""
    src = tmp_path / "phone.mp4"
    frames = clip_frames(frames=6)
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt, s.options = W, H, "yuv444p", {"crf": "0"}
        s.set_display_rotation(degrees)
        for arr in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        c.mux(s.encode(None))
    out = tmp_path / "color.mp4"
    colorize_video(src, out, Colorizer(tiny_model_file))
    shown = (H, W) if turns % 2 else (W, H)
    assert probe(out)["size"] == shown
    with av.open(str(out)) as c:
        first = next(c.decode(video=0))
    assert first.rotation == 0  # upright pixels, no display matrix left to apply
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    expected = np.rot90(frames[0], turns).astype(np.float32) @ luma
    got = first.to_ndarray(format="rgb24").astype(np.float32) @ luma
    assert np.abs(got - expected).mean() < np.abs(got - expected[::-1, ::-1]).mean() / 3  # turned the right way


# -- hints -----------------------------------------------------------------------------------------
def test_hints_are_carried_through_their_shot_only(clip, tiny_model_file):
    from colorize.hints import Hint
    from colorize.video import track_hints

    colorizer = Colorizer(tiny_model_file)  # working size = the clip's size: flow in input pixels
    tracked, cuts = track_hints(clip, colorizer, {5: [Hint(50, 30, "#2a6fdb")]})
    assert cuts == [CUT]
    assert set(tracked) <= set(range(CUT)) and {0, 5, CUT - 1} <= set(tracked)  # its shot, both ways
    for frame, (hint,) in tracked.items():  # the pan moves the content by (-3, -1) px per frame
        assert abs(hint.x - (50 - 3 * (frame - 5))) < 2.5 and abs(hint.y - (30 - (frame - 5))) < 2.5, (frame, hint)
        assert hint.color == "#2a6fdb"


def test_video_with_hints(clip, tmp_path, tiny_model_file, capsys):
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps([{"frame": 3, "x": 40, "y": 30, "color": "#2a6fdb"}]))
    plain, hinted = tmp_path / "plain.mp4", tmp_path / "hinted.mp4"
    for out, extra in ((plain, []), (hinted, ["--hints", str(hints)])):
        assert cli_main(["video", str(clip), "-o", str(out), "--model", str(tiny_model_file), "-q", *extra]) == 0
    a = [f.to_ndarray(format="rgb24").astype(np.float64) for f in av.open(str(plain)).decode(video=0)]
    b = [f.to_ndarray(format="rgb24").astype(np.float64) for f in av.open(str(hinted)).decode(video=0)]
    changed = [float(np.abs(x - y).mean()) for x, y in zip(a, b, strict=True)]
    assert min(changed[:CUT]) > 3 * max(changed[CUT:]) and max(changed[CUT:]) < 2.0, changed
    hints.write_text(json.dumps([{"frame": 99, "x": 40, "y": 30, "color": "red"}]))
    assert cli_main(["video", str(clip), "-o", str(tmp_path / "x.mp4"), "--model", str(tiny_model_file), "-q",
                     "--hints", str(hints)]) == 1
    assert "24 frames" in capsys.readouterr().err


def test_video_hints_file_errors_name_the_bad_hint():
    """The second hint's missing color was reported as "hint 1: hint 0: missing color; fields are x, y, color,
    radius": a second, wrong index, and the fields without "frame"."""
    from colorize.video import video_hints_from_json

    good = {"frame": 0, "x": 1, "y": 2, "color": "red"}
    with pytest.raises(ValueError, match=r"^hint 1: missing color; fields are frame, x, y, color, radius$"):
        video_hints_from_json([good, {"frame": 3, "x": 1, "y": 2}])
    with pytest.raises(ValueError, match=r"^hint 0: unknown color 'redd'"):
        video_hints_from_json([{**good, "color": "redd"}])
    with pytest.raises(ValueError, match=r"^hint 1: needs a frame number"):
        video_hints_from_json([good, {"x": 1, "y": 2, "color": "red"}])
    assert video_hints_from_json([good, {**good, "frame": 4, "radius": 9}])[4][0].radius == 9


def test_cli_takes_the_model_options(clip, tmp_path, tiny_model_file):
    """``colorize video`` shares the root command's model options: --saturation 0 leaves the film gray."""
    chroma = {}
    for saturation in (0.0, 1.0):
        report = tmp_path / f"s{saturation}.json"
        out = tmp_path / f"s{saturation}.mp4"
        assert cli_main(["video", str(clip), "-o", str(out), "--model", str(tiny_model_file), "--saturation",
                         str(saturation), "--temperature", "0.5", "--device", "cpu", "--report-json", str(report),
                         "-q"]) == 0
        chroma[saturation] = json.loads(report.read_text())["chroma"]
    assert chroma[0.0] < 1e-6 < chroma[1.0]


@pytest.mark.parametrize("folder, exists", [("colorized", True), ("colorized/", False)])
def test_an_output_folder_gets_the_film_by_its_name(folder, exists, clip, tmp_path, tiny_model_file, monkeypatch):
    """``-o colorized/`` (or a folder that exists) writes colorized/clip.mp4, as the photo command writes into a folder."""
    monkeypatch.chdir(tmp_path)
    if exists:
        Path(folder).mkdir()
    assert cli_main(["video", str(clip), "-o", folder, "--model", str(tiny_model_file), "-q"]) == 0
    assert [p.name for p in Path("colorized").iterdir()] == ["clip.mp4"]
    assert probe(Path("colorized/clip.mp4"))["frames"] == FRAMES


@pytest.mark.parametrize("output", ["clip.mp4", "./clip.mp4", "."])
def test_the_input_as_output_is_refused_without_suggesting_overwrite(output, clip, tmp_path, tiny_model_file,
                                                                     monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = clip.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert cli_main(["video", "clip.mp4", "-o", output, "--model", str(tiny_model_file), "-q", *extra]) == 2
        err = capsys.readouterr().err
        assert "would overwrite the input" in err and "pass --overwrite" not in err
    assert clip.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_compose_runs_beside_and_encoding_on_the_writer_thread_in_order(clip, tmp_path, tiny_model_file, monkeypatch):
    """The full-resolution end runs beside the smoothing and the network: frames are composed on the composer
    threads, encoded and muxed on the writer thread, and still finish in their order."""
    import threading

    import colorize.video as video

    composed, encoded = [], []
    compose, finish = video._compose_frame, video._finish_frame

    def spy_compose(*args):
        composed.append(threading.current_thread().name)
        return compose(*args)

    def spy_finish(frame, *args):
        encoded.append((threading.current_thread().name, frame.pts))
        return finish(frame, *args)

    monkeypatch.setattr(video, "_compose_frame", spy_compose)
    monkeypatch.setattr(video, "_finish_frame", spy_finish)
    colorize_video(clip, tmp_path / "out.mp4", Colorizer(tiny_model_file), batch_size=5)
    assert len(composed) == FRAMES and all(name.startswith("colorize-compose") for name in composed)
    assert len(encoded) == FRAMES and all(name.startswith("colorize-writer") for name, _ in encoded)
    assert [pts for _, pts in encoded] == sorted(pts for _, pts in encoded)
    assert probe(tmp_path / "out.mp4")["frames"] == FRAMES


def test_a_writer_error_stops_the_run_and_leaves_no_output(clip, tmp_path, tiny_model_file, monkeypatch):
    import colorize.video as video

    calls = []
    finish = video._finish_frame

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("encoder broke")
        return finish(*args)

    monkeypatch.setattr(video, "_finish_frame", failing)
    with pytest.raises(RuntimeError, match="encoder broke"):
        colorize_video(clip, tmp_path / "out.mp4", Colorizer(tiny_model_file), batch_size=4)
    assert len(calls) == 3  # nothing ran after the error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_what_ffmpeg_refuses_to_write_is_a_clear_error(clip, tmp_path, tiny_model_file, monkeypatch, capsys):
    """A picture extension (FFmpeg would write a sequence of pictures), and any encoder or muxer error mid-film: an
    error naming the output, no traceback, nothing left."""
    assert cli_main(["video", str(clip), "-o", str(tmp_path / "frame.jpg"), "--model", str(tiny_model_file), "-q"]) == 1
    assert "frame.jpg: '.jpg' is a picture format, not a video's" in capsys.readouterr().err
    import colorize.video as video

    def refused(*args):
        raise av.error.ArgumentError(22, "Invalid argument")

    monkeypatch.setattr(video, "_finish_frame", refused)
    with pytest.raises(VideoError, match="out.mp4: cannot write the video"):
        colorize_video(clip, tmp_path / "out.mp4", Colorizer(tiny_model_file), batch_size=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_network_runtime_auto_is_onnx_where_the_model_has_an_export(tiny_model_file):
    from colorize.commands.options import network_runtime

    assert network_runtime("auto", None) == "onnx"  # the shipped default model has its export
    assert network_runtime("auto", "model.onnx") == "onnx"
    assert network_runtime("auto", str(tiny_model_file)) == "torch"  # a weight file: torch unless asked
    assert network_runtime("auto", None, "cuda") == "torch"
    assert network_runtime("torch", None) == "torch" and network_runtime("onnx", str(tiny_model_file)) == "onnx"


def test_cli_runtime_onnx_gives_the_torch_frames(clip, tmp_path, tiny_model_file, monkeypatch):
    """``--runtime onnx`` runs the network on onnxruntime inside the torch pipeline: the same film."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    reports = {}
    for runtime in ("torch", "onnx"):
        report = tmp_path / f"{runtime}.json"
        assert cli_main(["video", str(clip), "-o", str(tmp_path / f"{runtime}.mp4"), "--model", str(tiny_model_file),
                         "--runtime", runtime, "--report-json", str(report), "-q"]) == 0
        reports[runtime] = json.loads(report.read_text())
    assert len(list((tmp_path / "cache").rglob("*.onnx"))) == 1  # the weight file, exported once
    for key in ("frames", "cuts"):
        assert reports["onnx"][key] == reports["torch"][key]
    assert reports["onnx"]["chroma"] == pytest.approx(reports["torch"]["chroma"], abs=1e-3)
    assert reports["onnx"]["flicker"] == pytest.approx(reports["torch"]["flicker"], abs=1e-3)


def test_the_run_uses_one_torch_thread_and_restores_the_setting(clip, tmp_path, tiny_model_file, monkeypatch):
    """The pipeline's threads are the parallelism: torch runs one intra-op thread in each during the run."""
    import colorize.video as video

    threads = []
    finish = video._finish_frame

    def spy(*args):
        threads.append(torch.get_num_threads())
        return finish(*args)

    monkeypatch.setattr(video, "_finish_frame", spy)
    colorizer = Colorizer(tiny_model_file)
    before = torch.get_num_threads()
    colorize_video(clip, tmp_path / "one.mp4", colorizer)
    assert set(threads) == {1} and torch.get_num_threads() == before
    threads.clear()
    colorize_video(clip, tmp_path / "as_set.mp4", colorizer, torch_threads=None)
    assert set(threads) == {before}
