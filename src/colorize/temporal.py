"""Temporal consistency for video: colors carried from frame to frame along the optical flow.

At the working size, the previous frame's ab is carried along the optical flow of the gray frames
and blended with the new prediction::

    ab_t = a * c * warp(ab_{t-1}) + (1 - a * c) * pred_t

where ``c`` in [0, 1] is the per-pixel reliability of the flow (forward-backward agreement and the
lightness error after warping) and the blend restarts from ``pred_t`` at scene cuts. The network need not
see every frame (:class:`KeyframePlan`): between its keyframes, ``pred_t`` is the last prediction carried
along the same flow, as deep feature flow (Zhu et al. 2017) carries a network's features between keyframes.
Flicker is measured the same way: the mean ab change between consecutive frames after warping by the flow.

Plain functions on numpy arrays (L in [0, 100] as (h, w), normalized ab as (h, w, 2)); OpenCV gives
the flow. No video files here: :mod:`colorize.video` reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

import numpy as np

from colorize.color import AB_SCALE

L_TO_U8 = 255.0 / 100.0  # L in [0, 100] -> 8-bit gray for OpenCV's flow
FLOW_PRESETS = ("ultrafast", "fast", "medium")  # OpenCV's DIS presets, fastest first


@dataclass(frozen=True)
class TemporalConfig:
    """How strongly ab is carried along the motion, and when it is not."""

    alpha: float = 0.8  # weight of the propagated ab where the flow is fully reliable
    fb_tolerance: float = 0.75  # px: forward-backward mismatch where reliability falls to 1/e
    l_tolerance: float = 6.0  # L units: lightness error after warping where reliability falls to 1/e
    cut_threshold: float = 0.3  # histogram distance (0..1) between gray frames that marks a scene cut
    min_reliable: float = 0.15  # mean reliability below this also counts as a cut (the flow failed)
    # DIS preset of the flow (FLOW_PRESETS). "fast" stops at a quarter of the working size where "medium"
    # goes on to half: at 256x144, a quarter of medium's time for ~4% more flicker (benchmarks/video_speed.py)
    flow: str = "fast"
    # the network colors the first frame of a shot, then every keyframe_interval-th; the frames between carry its
    # last prediction along the motion (1: every frame). 2 halves the network's share of a frame's work (about a
    # third of it at 480p on 2 cores) and the colors it blends change no faster than the motion carries them
    keyframe_interval: int = 2

    def __post_init__(self):
        if self.flow not in FLOW_PRESETS:
            raise ValueError(f"unknown flow preset '{self.flow}'; choose from: {', '.join(FLOW_PRESETS)}")
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")
        for name in ("fb_tolerance", "l_tolerance"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {self.keyframe_interval}")
        for name in ("cut_threshold", "min_reliable"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@lru_cache(maxsize=None)
def _dis(preset: str):
    import cv2

    return cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))


def gray_u8(l: np.ndarray) -> np.ndarray:
    """(h, w) L in [0, 100] -> (h, w) uint8, the input OpenCV's flow wants."""
    return np.clip(l * L_TO_U8 + 0.5, 0, 255).astype(np.uint8)


def optical_flow(src: np.ndarray, dst: np.ndarray, *, preset: str = TemporalConfig.flow) -> np.ndarray:
    """Dense flow on ``src``'s grid (DIS, a preset of :data:`FLOW_PRESETS`): ``src(x) ~ dst(x + flow(x))``.

    Args:
        src, dst: (h, w) L in [0, 100].
    Returns:
        (h, w, 2) float32 displacements (dx, dy) in pixels.
    """
    return _dis(preset).calc(gray_u8(src), gray_u8(dst), None)


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx.flags.writeable = gy.flags.writeable = False  # shared by every call
    return gx, gy


def _sample_grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = _grid(*flow.shape[:2])
    return gx + flow[..., 0], gy + flow[..., 1]


def _square_norm(v: np.ndarray) -> np.ndarray:
    """(h, w, 2) -> (h, w) squared length of each vector (channel by channel: ~15x faster than a reduction
    over numpy's last axis of length 2)."""
    return v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]


def _norm(v: np.ndarray) -> np.ndarray:
    """(h, w, 2) -> (h, w) length of each vector."""
    return np.sqrt(_square_norm(v))


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out(x) = image(x + flow(x))``, bilinear, edges repeated.

    Args:
        image: (h, w) or (h, w, C) float32.
        flow: (h, w, 2) on the output grid.
    """
    import cv2

    map_x, map_y = _sample_grid(flow)
    return cv2.remap(np.ascontiguousarray(image, np.float32), map_x, map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


@dataclass
class Motion:
    """How the current frame came from the previous one."""

    flow: np.ndarray  # (h, w, 2) on the current grid: current(x) ~ previous(x + flow(x))
    confidence: np.ndarray  # (h, w) in [0, 1]: how far the flow can be trusted at each pixel


def flow_confidence(flow_back: np.ndarray, flow_fwd: np.ndarray, l_cur: np.ndarray, l_prev: np.ndarray,
                    cfg: TemporalConfig = TemporalConfig()) -> np.ndarray:
    """Per-pixel reliability of ``flow_back`` (current -> previous) in [0, 1].

    Low where going back then forward again does not return to the start (occlusions, bad matches;
    tolerance grows with the motion as in Sundaram et al. 2010), where the warped previous lightness
    does not match the current one, and where the flow points outside the previous frame.

    Args:
        flow_back: (h, w, 2) flow from the current frame to the previous one.
        flow_fwd: (h, w, 2) flow from the previous frame to the current one.
        l_cur, l_prev: (h, w) L in [0, 100].
    """
    h, w = l_cur.shape
    fwd_at_target = warp(flow_fwd, flow_back)  # (h, w, 2): forward flow where each pixel lands
    round_trip = _square_norm(flow_back + fwd_at_target)
    scale = cfg.fb_tolerance**2 + 0.01 * (_square_norm(flow_back) + _square_norm(fwd_at_target))
    l_err = (l_cur - warp(l_prev, flow_back)) / cfg.l_tolerance
    map_x, map_y = _sample_grid(flow_back)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    conf = np.exp(-(round_trip / scale + l_err * l_err))  # exp(-round trip) * exp(-(L error)^2)
    return (conf * inside).astype(np.float32)


def estimate_motion(l_prev: np.ndarray, l_cur: np.ndarray, cfg: TemporalConfig = TemporalConfig()) -> Motion:
    """Flow from the current frame back to the previous one, with its per-pixel reliability.

    Args:
        l_prev, l_cur: (h, w) L in [0, 100] at working size.
    """
    back = optical_flow(l_cur, l_prev, preset=cfg.flow)
    fwd = optical_flow(l_prev, l_cur, preset=cfg.flow)
    return Motion(back, flow_confidence(back, fwd, l_cur, l_prev, cfg))


def histogram_distance(l_a: np.ndarray, l_b: np.ndarray, *, bins: int = 32) -> float:
    """Half the L1 distance between the lightness histograms: 0 (same) .. 1 (disjoint)."""
    ha, hb = _histogram(l_a, bins) / l_a.size, _histogram(l_b, bins) / l_b.size
    return 0.5 * float(np.abs(ha - hb).sum())


def _histogram(l: np.ndarray, bins: int) -> np.ndarray:
    """Counts of L in ``bins`` equal bins over [0, 100] (100 in the last): ``np.histogram``'s for L in range,
    by ``np.bincount`` (np.histogram's general path costs ~6x as much)."""
    index = (l * (bins / 100.0)).astype(np.intp)
    return np.bincount(np.clip(index, 0, bins - 1, out=index).ravel(), minlength=bins)


def is_scene_cut(l_prev: np.ndarray, l_cur: np.ndarray, *, threshold: float = TemporalConfig.cut_threshold) -> bool:
    """True when the gray frames' histograms differ by more than ``threshold`` (a different shot)."""
    return histogram_distance(l_prev, l_cur) > threshold


def blend(pred: np.ndarray, propagated: np.ndarray, confidence: np.ndarray, *, alpha: float) -> np.ndarray:
    """``alpha * c * propagated + (1 - alpha * c) * pred``: trust the past where the flow is reliable.

    Args:
        pred, propagated: (h, w, 2) normalized ab.
        confidence: (h, w) in [0, 1].
    """
    weight = (alpha * confidence)[..., None]
    return (weight * propagated + (1.0 - weight) * pred).astype(np.float32)


def flicker(ab: np.ndarray, ab_prev: np.ndarray, motion: Motion) -> float:
    """Mean ab change (Lab units) between consecutive frames after following the motion, weighted
    by the flow's reliability. Lower is steadier; 0 means colors move exactly with the content.

    Args:
        ab, ab_prev: (h, w, 2) normalized ab of the current and previous frame.
        motion: from :func:`estimate_motion` (previous -> current).
    """
    return _change(ab, warp(ab_prev, motion.flow), motion.confidence)


def _change(ab: np.ndarray, propagated: np.ndarray, weight: np.ndarray) -> float:
    """:func:`flicker` given the previous ab already carried along the motion (``propagated``)."""
    total = float(weight.sum())
    return float((_norm(ab - propagated) * weight).sum() * AB_SCALE / total) if total > 0 else float("nan")


def chroma(ab: np.ndarray) -> float:
    """Mean chroma ``|ab|`` in Lab units of (h, w, 2) normalized ab."""
    return float(_norm(ab).mean() * AB_SCALE)


@dataclass
class TemporalStats:
    """Running measurements of one video: cuts, flicker and chroma of the output and of the raw predictions."""

    frames: int = 0
    predicted: int = 0  # frames the network colored (the others carried its last prediction along the motion)
    cuts: list[int] = field(default_factory=list)  # indices of frames that start a new shot
    flicker: list[float] = field(default_factory=list)  # per frame pair, of what is composed
    flicker_per_frame: list[float] = field(default_factory=list)  # per frame pair, of the raw predictions
    chroma: list[float] = field(default_factory=list)
    chroma_per_frame: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Means over the video (None where nothing was measured) and the ratio output / per-frame."""

        def mean(values: list[float]) -> float | None:
            finite = [v for v in values if np.isfinite(v)]
            return float(np.mean(finite)) if finite else None

        out = {"predicted_frames": self.predicted, "cuts": list(self.cuts), "flicker": mean(self.flicker),
               "flicker_per_frame": mean(self.flicker_per_frame),
               "chroma": mean(self.chroma), "chroma_per_frame": mean(self.chroma_per_frame)}
        f, f0 = out["flicker"], out["flicker_per_frame"]
        out["flicker_ratio"] = f / f0 if f is not None and f0 else None
        return out


class TemporalSmoother:
    """Carries ab along the motion from frame to frame and measures flicker; one instance per video.

    >>> smoother = TemporalSmoother()
    >>> for l, pred in frames:          # (h, w) L and (h, w, 2) normalized ab at working size
    ...     ab = smoother(l, pred)     # what to compose
    """

    def __init__(self, cfg: TemporalConfig = TemporalConfig(), *, enabled: bool = True, measure: bool = True):
        """
        Args:
            cfg: blending strength, flow reliability tolerances and cut thresholds.
            enabled: False passes predictions through unchanged (per-frame colorization).
            measure: estimate the motion even when disabled, to measure flicker.
        """
        self.cfg, self.enabled, self.measure = cfg, enabled, measure
        self.stats = TemporalStats()
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (L, pred or carried pred, output)
        self._prev_predicted = False  # whether the previous frame's pred was the network's own

    def __call__(self, l: np.ndarray, pred: np.ndarray | None,
                 predict: Callable[[], np.ndarray] | None = None) -> np.ndarray:
        """One frame: (h, w) L in [0, 100] and (h, w, 2) predicted normalized ab -> (h, w, 2) ab to compose.

        ``pred`` None: a frame between keyframes (:class:`KeyframePlan`): the last prediction is carried along
        the motion in its place, and ``predict()`` gives the frame's own where it cannot be (the first frame, a
        scene cut, the flow lost). The raw-prediction measurements (``flicker_per_frame``, ``chroma_per_frame``)
        are taken on predicted frames only.
        """
        index = self.stats.frames
        self.stats.frames += 1
        motion = None
        if self._prev is not None and self._prev[0].shape != l.shape:
            self._prev = None  # the frame size changed: nothing to follow
        if self._prev is not None:
            l_prev = self._prev[0]
            cut = is_scene_cut(l_prev, l, threshold=self.cfg.cut_threshold)
            if not cut and (self.enabled or self.measure or pred is None):
                motion = estimate_motion(l_prev, l, self.cfg)
                if float(motion.confidence.mean()) < self.cfg.min_reliable:
                    cut, motion = True, None
            if cut:
                self.stats.cuts.append(index)
        carried = pred is None
        if carried:
            if motion is None:  # nothing to carry from
                if predict is None:
                    raise ValueError("a frame without a prediction needs predict() where the motion cannot be followed")
                pred, carried = predict(), False
            else:
                pred = warp(self._prev[1], motion.flow)
        self.stats.predicted += not carried
        out = pred
        if motion is not None:
            propagated = warp(self._prev[2], motion.flow)
            if self.enabled:
                out = blend(pred, propagated, motion.confidence, alpha=self.cfg.alpha)
            if self.measure:
                self.stats.flicker.append(_change(out, propagated, motion.confidence))
                if not carried and self._prev_predicted:
                    self.stats.flicker_per_frame.append(flicker(pred, self._prev[1], motion))
        if self.measure:
            self.stats.chroma.append(chroma(out))
            if not carried:
                self.stats.chroma_per_frame.append(chroma(pred))
        self._prev = (l, pred, out)
        self._prev_predicted = not carried
        return out


class KeyframePlan:
    """Which frames the network colors, decided from the gray frames alone (so the network can run ahead): the
    first frame, the first of each shot (:func:`is_scene_cut`), the frames in ``always`` (hinted ones), and every
    ``interval``-th frame after the last keyframe. Call it on every frame, in order.

    >>> plan = KeyframePlan(2)
    >>> [plan(l) for l in frames_of_one_shot]   # True, False, True, False, ...
    """

    def __init__(self, interval: int = TemporalConfig.keyframe_interval, *,
                 cut_threshold: float = TemporalConfig.cut_threshold, always: Iterable[int] = ()):
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval, self.cut_threshold, self.always = interval, cut_threshold, frozenset(always)
        self._prev: np.ndarray | None = None
        self._since_key = 0
        self.index = 0  # the next frame's index

    def __call__(self, l: np.ndarray) -> bool:
        """Whether the frame with (h, w) L ``l`` (in [0, 100]) is a keyframe."""
        index, prev = self.index, self._prev
        self.index += 1
        self._prev = l
        key = (self.interval == 1 or prev is None or prev.shape != l.shape or index in self.always
               or self._since_key >= self.interval - 1
               or is_scene_cut(prev, l, threshold=self.cut_threshold))
        self._since_key = 0 if key else self._since_key + 1
        return key
