"""User color hints: "the dress was red". Parsing, and the edge-aware propagation of their correction.

A hint is a point (x, y in the input photo's pixels), a color and an optional radius. Its chroma (the
a, b of the color in CIE Lab) fills the region around the point that the photo's edges bound: each
pixel gets the *correction* (hint ab minus the pixel's predicted ab) times the hint's weight there,
1 near the point and fading with distance to 0. Lightness is never touched (the pipeline keeps the
photo's L), so a light-blue hint on a dark coat gives a dark-blue coat.

The correction is taken per pixel, not once at the hint's point and added everywhere: with the shipped
model, a blue hint on a flat gray region left pixels of the region up to 9 degrees off the hint's hue
that way (the prediction's own variation across the region was kept), and ~0 this way.

Propagation runs at the network's working size, before the guided upsampling, as a **geodesic
distance** from each hint over the working-size lightness: a step between neighbouring pixels costs

    d_step = spatial / R + (delta_L / EDGE_L) ** 2 + (delta_ab / EDGE_AB) ** 2

(``spatial`` 1 or sqrt(2) px, ``R`` the hint's radius at working size, ``delta_L`` the lightness step,
``delta_ab`` the step in the network's predicted color). A flat region costs only its extent; a strong
edge (a jump of ~15 L units or more) costs more than any radius, so the hint stops there; texture's
small steps cost little because the terms are squared. The predicted-color term stops hints where the
lightness alone does not tell two things apart but the network does (a face against a backdrop of
the same brightness); it uses the prediction, never any fixed color, and not within
:data:`AB_BORDER` px of the frame, where the network's zero padding ripples its colors. The scales
were chosen on the example photos: with larger ones hints leaked from a backdrop into a face, with
smaller ones a hint on creased clothing covered only the crease it was on (textured objects may need
several hints). Each pixel belongs to its geodesically nearest hint (one multi-source Dijkstra per distinct
radius, however many hints), which pulls it fully up to d = R / 2, half at R and not at all from
3 R / 2 on (a raised cosine between). Where two hints' territories meet without an edge between
them, the seam is softened by a guided filter (edge-aware, so it stays sharp where there is an edge).
Without a radius a hint is bounded by edges only: it fills its whole region.

Why geodesic distance rather than an optimization (Levin et al. 2004, or a fast bilateral solver):
it is local (Dijkstra stops at 1.5 R, so a small hint costs little), the radius means a distance the
user can read, "far" and "across an edge" are the same quantity, and there is no linear system whose
solution bleeds everywhere a little. Measured in ``benchmarks/hints.py`` on a 256 x 192 working grid
(2 busy CPU cores): ~35 ms for the weights of 5 hints, ~600 ms for a direct sparse solve of the
screened edge-aware Laplacian (both ab channels).

JSON format of a hints file (``--hints hints.json``; the web API takes the same list)::

    [{"x": 120, "y": 80, "color": "#2a6fdb"}, {"x": 300, "y": 40, "color": "red", "radius": 60}]

or, for several photos, ``{"photo.jpg": [...], "other.png": [...]}`` keyed by file name. ``color``
is anything Pillow's ``ImageColor`` reads (``#rgb``, ``#rrggbb``, CSS names, ``rgb(...)``, ``hsl(...)``);
``radius`` (input pixels, > 0; full strength up to half of it) defaults to twice the photo's diagonal:
bounded by edges only, the hint fills its whole region.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageColor

from colorize.color import AB_SCALE, lab_to_rgb, normalize_ab, normalize_l, rgb_to_lab

EDGE_L = 14.0  # L units: a lightness step of this size costs as much as the hint's whole radius
EDGE_AB = 8.0  # ab units: a step of this size in the predicted color costs the same
AB_BORDER = 4  # working px: the predicted color is not trusted as an edge this close to the frame
CORE = 0.5  # geodesic distance (in radii) up to which a hint has its full weight
REACH = 1.5  # geodesic distance (in radii) from which a hint has no effect
SEAM_RADIUS = 4  # working px: where two hints' territories meet without an edge, the blend's half-width
SEAM_EPS = 1e-3  # guided-filter regularization (normalized L variance) for that blend


@dataclass(frozen=True)
class Hint:
    """One user hint, in the input photo's pixel coordinates."""

    x: float  # column, 0 = left edge of the photo
    y: float  # row, 0 = top
    color: str  # anything Pillow's ImageColor reads: "#2a6fdb", "red", "rgb(200, 30, 30)"
    radius: float | None = None  # input pixels; None: twice the photo's diagonal (bounded by edges only)

    def __post_init__(self):
        for name in ("x", "y", "radius"):  # numpy's numbers (an argmax, an array's element) as Python's
            value = getattr(self, name)
            if isinstance(value, (np.integer, np.floating)):
                object.__setattr__(self, name, value.item())
        for name in ("x", "y"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"hint {name} must be a finite number, got {value!r}")
        if self.radius is not None and (not _is_number(self.radius) or not self.radius > 0
                                        or not math.isfinite(self.radius)):
            raise ValueError(f"hint radius must be a number > 0, got {self.radius!r}")
        parse_color(self.color)

    @property
    def rgb(self) -> tuple[int, int, int]:
        return parse_color(self.color)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"x": self.x, "y": self.y, "color": self.color}
        if self.radius is not None:
            out["radius"] = self.radius
        return out


def _is_number(value: Any) -> bool:
    """An int or float, not a bool (JSON's true is Python's 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_color(color: str) -> tuple[int, int, int]:
    """A hex or CSS color name -> (r, g, b) 0..255, by Pillow's ImageColor. ValueError names the bad value."""
    if not isinstance(color, str):
        raise ValueError(f"hint color must be a string such as '#2a6fdb' or 'red', got {color!r}")
    try:
        return ImageColor.getrgb(color.strip())[:3]
    except ValueError:
        raise ValueError(f"unknown color '{color}'; use #rgb, #rrggbb, a CSS color name or rgb(r, g, b)") from None


def parse_hint(spec: str) -> Hint:
    """``"X,Y,COLOR[,RADIUS]"`` (the CLI's ``--hint``) -> Hint. COLOR may itself hold commas (``rgb(1,2,3)``)."""
    parts = spec.split(",", 2)
    if len(parts) < 3:
        raise ValueError(f"bad hint '{spec}'; expected X,Y,COLOR or X,Y,COLOR,RADIUS (e.g. 120,80,#2a6fdb)")
    x, y, rest = parts
    color, radius = rest, None
    head, sep, tail = rest.rpartition(",")
    if sep and head:
        try:
            radius = float(tail)
            color = head
        except ValueError:  # the comma belongs to the color: rgb(1,2,3)
            pass
    try:
        return Hint(float(x), float(y), color.strip(), radius)
    except ValueError as e:
        raise ValueError(f"bad hint '{spec}': {e}") from None


def hints_from_json(data: Any, *, other_fields: Sequence[str] = ()) -> list[Hint]:
    """A JSON list of {"x", "y", "color", "radius"?} -> hints. ValueError names the bad entry.
    ``other_fields`` are let through (a film's "frame", which the caller reads)."""
    if not isinstance(data, list):
        raise ValueError(f"hints must be a JSON list of {{\"x\", \"y\", \"color\", \"radius\"?}}, got {type(data).__name__}")
    fields = [*other_fields, "x", "y", "color", "radius"]
    hints = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"hint {i}: expected an object with x, y, color, got {item!r}")
        unknown = set(item) - set(fields)
        missing = {"x", "y", "color"} - set(item)
        if unknown or missing:
            raise ValueError(f"hint {i}: " + (f"missing {', '.join(sorted(missing))}" if missing else
                                              f"unknown field(s) {', '.join(sorted(unknown))}")
                             + f"; fields are {', '.join(fields)}")
        try:
            hints.append(Hint(item["x"], item["y"], item["color"], item.get("radius")))
        except ValueError as e:
            raise ValueError(f"hint {i}: {e}") from None
    return hints


def hints_to_json(hints: Iterable[Hint]) -> list[dict[str, Any]]:
    return [h.to_json() for h in hints]


def read_json(path: str | Path) -> Any:
    """A hints file's JSON, for photos and films alike. OSError, or ValueError: not JSON, or not UTF-8 text
    (UnicodeDecodeError); a byte-order mark is allowed (-sig: Windows editors start UTF-8 with one)."""
    return json.loads(Path(path).read_text(encoding="utf-8-sig"))


def load_hints(path: str | Path) -> list[Hint] | dict[str, list[Hint]]:
    """Read a hints file: a list (one photo) or ``{file name: list}`` (several). See the module docstring."""
    path = Path(path)
    try:
        data = read_json(path)
    except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8 text (UnicodeDecodeError)
        raise ValueError(f"{path}: cannot read hints ({e})") from None

    def parse(items: Any, photo: str = "") -> list[Hint]:
        try:
            return hints_from_json(items)
        except ValueError as e:  # in a file for several photos, which photo's hints
            raise ValueError(f"{path}: {photo}{e}") from None

    if isinstance(data, dict):
        if {"x", "y", "color"} & set(data) and not any(isinstance(v, list) for v in data.values()):
            raise ValueError(f"{path}: one hint must be in a list, [{json.dumps(data)}]; an object maps "
                             "photo file names to lists of hints")
        return {str(name): parse(items, f"'{name}': ") for name, items in data.items()}
    return parse(data)


def hint_ab(hints: Sequence[Hint]) -> torch.Tensor:
    """The hints' chroma: (N, 2) normalized ab of their colors (through ``colorize.color``)."""
    rgb = torch.tensor([h.rgb for h in hints], dtype=torch.float32).T[:, :, None] / 255.0  # (3, N, 1)
    return normalize_ab(rgb_to_lab(rgb)[1:, :, 0].T)


def check_inside(hints: Sequence[Hint], width: int, height: int) -> None:
    """ValueError naming the first hint outside a ``width`` x ``height`` photo."""
    for h in hints:
        if not (0 <= h.x <= width and 0 <= h.y <= height):
            raise ValueError(f"hint at ({h.x:g}, {h.y:g}) is outside the {width}x{height} photo")


# -- propagation ---------------------------------------------------------------------------------
class Propagator:
    """Geodesic weights of hints over one photo's working-size lightness; built once per photo, so
    re-rendering with other hints only runs Dijkstra from the new points.

    Args:
        l_small: (h, w) or (1, 1, h, w) L in [0, 100] at working size.
        full_size: (H, W) of the photo the hints' coordinates refer to.
    """

    def __init__(self, l_small: torch.Tensor, full_size: tuple[int, int], ab: torch.Tensor | None = None):
        self.guide = normalize_l(l_small.detach().reshape(1, 1, *l_small.shape[-2:]).float())
        l = l_small.detach().reshape(l_small.shape[-2:]).double().cpu().numpy()
        pred = None if ab is None else ab.detach().reshape(2, *l.shape).double().cpu().numpy() * AB_SCALE
        interior = np.zeros(l.shape, bool)  # networks' zero padding ripples their colors near the frame
        interior[AB_BORDER:-AB_BORDER or None, AB_BORDER:-AB_BORDER or None] = True
        self.h, self.w = l.shape
        self.full_h, self.full_w = full_size
        idx = np.arange(self.h * self.w).reshape(self.h, self.w)
        rows, cols, spatial, edge = [], [], [], []
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each undirected 8-neighbour pair once
            ys = slice(0, self.h - dy)
            xs = slice(max(0, -dx), self.w - max(0, dx))
            ys2 = slice(dy, self.h)
            xs2 = slice(max(0, dx), self.w + min(0, dx))
            a, b = idx[ys, xs].ravel(), idx[ys2, xs2].ravel()
            rows.append(a)
            cols.append(b)
            spatial.append(np.full(a.size, math.hypot(dx, dy)))
            cost = ((l[ys, xs] - l[ys2, xs2]) / EDGE_L) ** 2
            if pred is not None:  # where the network sees different things, so do the hints
                step2 = ((pred[:, ys, xs] - pred[:, ys2, xs2]) ** 2).sum(0)
                cost = cost + step2 / EDGE_AB**2 * (interior[ys, xs] & interior[ys2, xs2])
            edge.append(cost.ravel())
        self._rows, self._cols = np.concatenate(rows), np.concatenate(cols)
        self._spatial, self._edge = np.concatenate(spatial), np.concatenate(edge)
        self._graphs: dict[float, Any] = {}

    def default_radius(self) -> float:
        """Input pixels: twice the diagonal, so distance alone never weakens the hint: edges bound it."""
        return 2.0 * math.hypot(self.full_h, self.full_w)

    def _graph(self, radius_small: float):
        from scipy.sparse import csr_matrix

        graph = self._graphs.get(radius_small)
        if graph is None:
            n = self.h * self.w
            graph = csr_matrix((self._spatial / radius_small + self._edge, (self._rows, self._cols)), shape=(n, n))
            if len(self._graphs) > 8:
                self._graphs.clear()
            self._graphs[radius_small] = graph
        return graph

    def node(self, hint: Hint) -> int:
        """The working-size pixel a hint falls on."""
        col = min(self.w - 1, max(0, int((hint.x) * self.w / self.full_w)))
        row = min(self.h - 1, max(0, int((hint.y) * self.h / self.full_h)))
        return row * self.w + col

    def nearest(self, hints: Sequence[Hint]) -> tuple[np.ndarray, np.ndarray]:
        """The geodesic Voronoi diagram of the hints: for every working-size pixel, the distance to its
        nearest hint (in that hint's radii) and that hint's index; each one (h, w). One Dijkstra per
        distinct radius, however many hints."""
        from scipy.sparse.csgraph import dijkstra

        scale = self.w / self.full_w  # working px per input px (the same both ways, up to rounding)
        n = self.h * self.w
        best, owner = np.full(n, np.inf), np.zeros(n, np.int64)
        groups: dict[float, list[int]] = {}
        for i, h in enumerate(hints):
            groups.setdefault(max(0.5, (h.radius or self.default_radius()) * scale), []).append(i)
        node_to_hint = np.zeros(n, np.int64)
        for radius_small, members in groups.items():
            nodes = [self.node(hints[i]) for i in members]
            node_to_hint[nodes] = members
            dist, _, sources = dijkstra(self._graph(radius_small), directed=False, indices=nodes,
                                        min_only=True, return_predecessors=True)
            better = dist < best
            best[better] = dist[better]
            owner[better] = node_to_hint[sources[better]]
        return best.reshape(self.h, self.w), owner.reshape(self.h, self.w)

    def weights(self, hints: Sequence[Hint]) -> tuple[torch.Tensor, torch.Tensor]:
        """Which hint owns each pixel and how hard it pulls there.

        Returns:
            owner: (h, w) long, index of the geodesically nearest hint.
            pull: (1, h, w) in [0, 1]: 1 up to CORE radii from the owner, 0 from REACH on.
        """
        d, owner = self.nearest(hints)
        ramp = np.clip((d - CORE) / (REACH - CORE), 0.0, 1.0)
        pull = 0.5 + 0.5 * np.cos(np.pi * ramp)  # raised cosine between CORE and REACH
        return torch.from_numpy(owner), torch.from_numpy(pull[None]).float()

    def apply(self, ab: torch.Tensor, hints: Sequence[Hint]) -> torch.Tensor:
        """Working-size normalized ab (1, 2, h, w) -> the same with the hints' corrections added."""
        from colorize.steps import guided_coefficients

        if not hints:
            return ab
        check_inside(hints, self.full_w, self.full_h)
        owner, pull = self.weights(hints)
        target = hint_ab(hints).to(ab.device)[owner.to(ab.device)].permute(2, 0, 1)[None]  # (1, 2, h, w)
        if len(hints) > 1:  # soften the seams between hints' territories where no edge separates them
            a, b = guided_coefficients(self.guide, target, radius=SEAM_RADIUS, eps=SEAM_EPS)
            target = a * self.guide + b
        return ab + pull.to(ab.device)[None] * (target - ab)  # the correction, weighted


def apply_hints(l_small: torch.Tensor, ab: torch.Tensor, hints: Sequence[Hint],
                full_size: tuple[int, int]) -> torch.Tensor:
    """One-shot :meth:`Propagator.apply`: (1, 1, h, w) L and (1, 2, h, w) normalized ab at working size,
    hints in the coordinates of a ``full_size`` (H, W) photo -> corrected ab."""
    return Propagator(l_small, full_size, ab).apply(ab, hints)


def as_hints(hints: Iterable[Hint | dict[str, Any] | str] | Hint | dict[str, Any] | str | None) -> list[Hint]:
    """Hints given as Hint objects, JSON-style dicts or ``"X,Y,COLOR[,RADIUS]"`` strings -> Hints; one of them
    alone is a list of one (a string is not read a character at a time)."""
    if isinstance(hints, (Hint, dict, str)):
        hints = [hints]
    elif hints is not None and not isinstance(hints, Iterable):
        raise TypeError(f"hints must be a list of hints (Hint, dict or 'X,Y,COLOR' string), got {hints!r}")
    out = []
    for h in hints or []:
        if isinstance(h, Hint):
            out.append(h)
        elif isinstance(h, dict):
            out.extend(hints_from_json([h]))
        elif isinstance(h, str):
            out.append(parse_hint(h))
        else:
            raise ValueError(f"a hint must be a Hint, a dict or an 'X,Y,COLOR' string, got {h!r}")
    return out


# -- a hand-tinted photo's own colors as hints ----------------------------------------------------
TINT_MIN_CHROMA = 10.0  # ab units off the photo's tone: a pixel counts as hand-tinted
TINT_MIN_AREA = 0.002  # fraction of the photo: smaller tinted specks are ignored
TINT_MAX_HINTS = 32  # the largest tinted regions, at most


def hints_from_tint(image: Image.Image | np.ndarray, *, size: int = 256) -> list[Hint]:
    """A hand-tinted photo's colors as hints: one per tinted region, at its most interior point, with the
    region's median chroma and a radius of its size.

    A pixel is tinted when it is more than :data:`TINT_MIN_CHROMA` off the photo's tone (neutral for a
    gray print, the hue of its median ab for a toned one: :func:`colorize.tone.off_tone`).

    Args:
        image: the photo, PIL or (H, W, 3) uint8 sRGB.
        size: long side the analysis runs at.
    """
    from scipy import ndimage

    from colorize.tone import off_tone, small_rgb

    width, height = image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])
    lab = rgb_to_lab(torch.from_numpy(small_rgb(image, size)).double())[0]  # (3, h, w)
    ab = lab[1:]
    base = ab.reshape(2, -1).median(dim=1).values
    tinted = off_tone(ab.numpy(), base.numpy()) > TINT_MIN_CHROMA
    tinted = ndimage.binary_opening(tinted, iterations=1)
    labels, count = ndimage.label(tinted)
    if count == 0:
        return []
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    order = np.argsort(-areas)[:TINT_MAX_HINTS]
    sx, sy = width / lab.shape[2], height / lab.shape[1]
    hints = []
    for k in order:
        if areas[k] < TINT_MIN_AREA * labels.size:
            break
        region = labels == k + 1
        inside = ndimage.distance_transform_edt(region)
        row, col = np.unravel_index(np.argmax(inside), inside.shape)
        mask = torch.from_numpy(region)
        l_med = lab[0][mask].median()
        a_med, b_med = ab[0][mask].median(), ab[1][mask].median()
        color = lab_to_rgb(torch.stack([l_med, a_med, b_med]).view(3, 1, 1).float())[:, 0, 0]
        r, g, b = (int(round(float(c) * 255)) for c in color)
        radius = max(2.0, math.sqrt(areas[k] / math.pi)) * 2 * max(sx, sy)
        hints.append(Hint(float((col + 0.5) * sx), float((row + 0.5) * sy), f"#{r:02x}{g:02x}{b:02x}", round(radius, 1)))
    return hints
