"""Geometry of the synthetic objects: each class's outlines (polygons in an object frame), with no colour or texture."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from ..classes import NUM_CLASSES
from . import versions

#: The class ids (as in :data:`segedu.data.classes.CLASSES`; 0 is Background).
(GENERAL, PAPER, PACK, METAL, GLASS, PLASTIC, STYRO, BAG, BATTERY, CLOTHING) = range(1, NUM_CLASSES)

#: Object length as a fraction of the image side: log-uniform in (low, high) per class.
LENGTH_RANGE = {
    GENERAL: (0.06, 0.5), PAPER: (0.1, 0.65), PACK: (0.15, 0.5), METAL: (0.1, 0.38),
    GLASS: (0.15, 0.5), PLASTIC: (0.1, 0.55), STYRO: (0.14, 0.6), BAG: (0.25, 0.85),
    BATTERY: versions.BATTERY[versions.GENERATOR_VERSION]["length"], CLOTHING: (0.35, 0.85),
}


def length_range(cls: int, version: str) -> tuple[float, float]:
    """:data:`LENGTH_RANGE` of ``cls`` as generator ``version`` drew it (only Battery's has changed)."""
    return versions.BATTERY[version]["length"] if cls == BATTERY else LENGTH_RANGE[cls]


# ============================================================================ random draws

def _pick(rng: np.random.Generator, weighted: dict):
    """One key of ``weighted``, drawn with probability proportional to its value."""
    keys = list(weighted)
    p = np.array([weighted[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw whose logarithm is uniform: as many small objects per octave of size as large ones."""
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


# ============================================================================ outlines

@dataclasses.dataclass
class Shape:
    """An object's outline (one or more polygons, pixel coordinates) and its own frame.

    ``u`` runs along ``angle`` from -1 to 1 over ``length``; ``v`` across it over ``width``;
    textures are written in (u, v) so that a can's highlight follows the can.
    """

    parts: list[np.ndarray]
    cx: float
    cy: float
    angle: float
    length: float
    width: float
    kind: str
    #: box faces as (polygon, brightness), for box-like objects
    faces: list[tuple[np.ndarray, float]] = dataclasses.field(default_factory=list)


def _to_image(local: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    """Object-frame points (x along the object, y across it, in pixels) -> image coordinates."""
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + local[:, 0] * c - local[:, 1] * s, cy + local[:, 0] * s + local[:, 1] * c], axis=1)


def _blob_local(rng, length, width, roughness, n=40):
    """A star-shaped blob: an ellipse whose radius wobbles (low orders) and frays (``roughness``)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radius = np.ones(n)
    for order in (2, 3, 5):
        radius += rng.uniform(0, 0.22 / order * 2) * np.cos(order * t + rng.uniform(0, 2 * np.pi))
    radius += roughness * rng.uniform(-1, 1, n)
    radius = np.clip(radius, 0.35, 1.6)
    return np.stack([0.5 * length * radius * np.cos(t), 0.5 * width * radius * np.sin(t)], axis=1)


def _rounded_rect_local(length, width, corner, n_arc=5):
    """A rectangle with quarter-circle corners of radius ``corner`` (pixels)."""
    corner = min(corner, 0.5 * length, 0.5 * width)
    hx, hy = 0.5 * length - corner, 0.5 * width - corner
    pts = []
    for (sx, sy, a0) in ((1, 1, 0.0), (-1, 1, 0.5 * np.pi), (-1, -1, np.pi), (1, -1, 1.5 * np.pi)):
        for a in np.linspace(a0, a0 + 0.5 * np.pi, n_arc):
            pts.append((sx * hx + corner * math.cos(a), sy * hy + corner * math.sin(a)))
    return np.array(pts)


def _sheet_local(rng, length, width, wobble):
    """A sheet of paper/cardboard: a rectangle with its corners pushed around a little."""
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * [0.5 * length, 0.5 * width]
    return corners + rng.uniform(-wobble, wobble, (4, 2)) * min(length, width)


def _bottle_local(rng, length, width, neck_share):
    """A bottle's side view, base at -x: body, a curved shoulder, a neck with a lip."""
    r, rn = 0.5 * width, 0.5 * width * rng.uniform(0.28, 0.45)
    x0, x_sh = -0.5 * length, 0.5 * length - neck_share * length
    x_neck = x_sh + 0.45 * neck_share * length
    top = [(x0 + 0.04 * length, r * 0.9), (x0 + 0.1 * length, r)]
    shoulder = [(x_sh + (x_neck - x_sh) * f, rn + (r - rn) * math.cos(0.5 * np.pi * f)) for f in np.linspace(0, 1, 6)]
    neck = [(0.5 * length - 0.08 * length, rn), (0.5 * length - 0.07 * length, rn * 1.15), (0.5 * length, rn * 1.15)]
    half = np.array(top + shoulder + neck)
    return np.concatenate([half, half[::-1] * [1, -1], [[x0, -r * 0.9], [x0, r * 0.9]]])


def _tshirt_local(rng, length, width):
    """A flat-laid T-shirt (x along the shirt from hem to neck)."""
    template = np.array([
        (-1.0, -0.5), (0.45, -0.5), (0.25, -0.85), (0.55, -1.0), (0.85, -0.55), (0.95, -0.25), (0.8, 0.0),
        (0.95, 0.25), (0.85, 0.55), (0.55, 1.0), (0.25, 0.85), (0.45, 0.5), (-1.0, 0.5),
    ])
    template = template + rng.uniform(-0.06, 0.06, template.shape)
    return template * [0.5 * length, 0.5 * width]


def _arc_strip_local(cx, cy, radius, thickness, a0, a1, n=14):
    """A thin curved band (a bag handle, a mask strap): an arc of given thickness."""
    a = np.linspace(a0, a1, n)
    outer = np.stack([cx + (radius + thickness / 2) * np.cos(a), cy + (radius + thickness / 2) * np.sin(a)], 1)
    inner = np.stack([cx + (radius - thickness / 2) * np.cos(a), cy + (radius - thickness / 2) * np.sin(a)], 1)
    return np.concatenate([outer, inner[::-1]])


def _torn_local(rng, length, width, gap):
    """A sheet torn across: two parts with a jagged edge, pulled ``gap`` pixels apart."""
    hx, hy = 0.5 * length, 0.5 * width
    cut_x = rng.uniform(-0.3, 0.3) * length
    ys = np.linspace(-hy, hy, 9)
    cut = np.stack([cut_x + rng.uniform(-0.07, 0.07, 9) * length, ys], 1)
    left = np.concatenate([[[-hx, -hy]], cut, [[-hx, hy]]])
    right = np.concatenate([cut[::-1], [[hx, hy], [hx, -hy]]]) + [gap, rng.uniform(-0.5, 0.5) * gap]
    return [left - [gap / 2, 0], right - [gap / 2, 0]]


def _box_shape(rng, cx, cy, length, width, angle, depth, kind) -> Shape:
    """A box seen obliquely: the front face plus the faces the extrusion ``depth`` makes visible."""
    front = _to_image(_sheet_local(rng, length, width, 0.02), cx, cy, angle)
    phi = rng.uniform(0, 2 * np.pi)
    extrude = depth * np.array([math.cos(phi), math.sin(phi)])
    back = front + extrude
    hull = cv2.convexHull(np.concatenate([front, back]).astype(np.float32))[:, 0, :].astype(float)
    faces = [(front, 1.0)]
    centre = front.mean(axis=0)
    for i in range(4):
        a, b = front[i], front[(i + 1) % 4]
        outward = (a + b) / 2 - centre
        if outward @ extrude > 0:  # this side faces the viewer
            faces.append((np.array([a, b, b + extrude, a + extrude]), rng.uniform(0.65, 0.9)))
    return Shape([hull], cx + extrude[0] / 2, cy + extrude[1] / 2, angle, length, width, kind, faces)


def _make_shape(cls: int, rng: np.random.Generator, size: int, look_of: int,
                version: str = versions.GENERATOR_VERSION) -> Shape:
    """Sample the outline of one object of class ``cls`` (``look_of``: the class whose look it takes)
    as generator ``version`` draws it."""
    length = size * _loguniform(rng, *length_range(cls, version))
    spread = size * 0.3
    cx, cy = (np.clip(rng.normal(size / 2, spread, 2), -0.05 * size, 1.05 * size)).tolist()
    angle = rng.uniform(0, 2 * np.pi)
    thin = max(1.5, size / 128)  # thin parts: a handle or strap is a couple of pixels wide

    def simple(local, kind, w):
        return Shape([_to_image(local, cx, cy, angle)], cx, cy, angle, length, w, kind)

    if cls == GENERAL and look_of != GENERAL:  # General trash borrowing another class's look
        w = length * rng.uniform(0.4, 0.9)
        return simple(_blob_local(rng, length, w, rng.uniform(0.02, 0.12)), "blob", w)
    if cls == GENERAL:
        kind = _pick(rng, {"food": 3, "tissue": 3, "wrapper": 3, "butt": 2, "mask": 1})
        if kind == "butt":
            length = size * _loguniform(rng, 0.03, 0.07)
            w = length * rng.uniform(0.22, 0.32)
            return simple(_rounded_rect_local(length, w, w / 2), kind, w)
        if kind == "mask":
            w = length * rng.uniform(0.55, 0.7)
            body = _rounded_rect_local(length, w, 0.15 * w)
            straps = [_arc_strip_local(-0.5 * length, 0, 0.3 * w, thin, 0.5 * np.pi, 1.5 * np.pi),
                      _arc_strip_local(0.5 * length, 0, 0.3 * w, thin, -0.5 * np.pi, 0.5 * np.pi)]
            parts = [_to_image(p, cx, cy, angle) for p in [body, *straps]]
            return Shape(parts, cx, cy, angle, length, w, kind)
        w = length * rng.uniform(0.4, 0.9)
        return simple(_blob_local(rng, length, w, rng.uniform(0.03, 0.15)), kind, w)
    if cls == PAPER:
        w = length * rng.uniform(0.5, 0.85)
        form = _pick(rng, {"sheet": 4, "crumpled": 4, "torn": 2})
        if form == "sheet":
            return simple(_sheet_local(rng, length, w, 0.08), "sheet", w)
        if form == "torn":
            parts = _torn_local(rng, length, w, gap=max(thin, rng.uniform(0.01, 0.05) * length))
            return Shape([_to_image(p, cx, cy, angle) for p in parts], cx, cy, angle, length, w, "sheet")
        return simple(_blob_local(rng, length, w, rng.uniform(0.08, 0.2), n=48), "crumpled", w)
    if cls == PACK:
        if rng.random() < 0.3:  # flattened carton: a folded sheet, nearly paper
            w = length * rng.uniform(0.45, 0.8)
            return simple(_sheet_local(rng, length, w, 0.03), "flat_pack", w)
        w = length * rng.uniform(0.4, 0.75)
        return _box_shape(rng, cx, cy, length, w, angle, rng.uniform(0.15, 0.45) * w, "box")
    if cls == METAL:
        if rng.random() < 0.3:  # can seen from above, or a lid
            return simple(_blob_local(rng, length, length * rng.uniform(0.8, 1.0), 0.0), "top", length)
        w = length * rng.uniform(0.5, 0.7)
        if rng.random() < 0.3:  # crushed
            return simple(_blob_local(rng, length, w, 0.12), "crushed", w)
        return simple(_rounded_rect_local(length, w, 0.12 * w), "can", w)
    if cls == GLASS:
        w = length * rng.uniform(0.25, 0.4)
        if rng.random() < 0.25:  # a jar
            w = length * rng.uniform(0.6, 0.9)
            return simple(_rounded_rect_local(length, w, 0.15 * w), "jar", w)
        return simple(_bottle_local(rng, length, w, rng.uniform(0.3, 0.45)), "bottle", w)
    if cls == PLASTIC:
        kind = _pick(rng, {"bottle": 5, "tub": 3, "piece": 2})
        if kind == "bottle":
            w = length * rng.uniform(0.28, 0.42)
            return simple(_bottle_local(rng, length, w, rng.uniform(0.2, 0.3)), kind, w)
        if kind == "tub":
            w = length * rng.uniform(0.55, 0.9)
            return _box_shape(rng, cx, cy, length, w, angle, rng.uniform(0.05, 0.25) * w, kind)
        w = length * rng.uniform(0.3, 0.8)
        return simple(_blob_local(rng, length, w, 0.15, n=14), kind, w)
    if cls == STYRO:
        w = length * rng.uniform(0.45, 0.9)
        kind = _pick(rng, {"tray": 4, "block": 3, "piece": 3})
        if kind == "block":
            return _box_shape(rng, cx, cy, length, w, angle, rng.uniform(0.2, 0.5) * w, kind)
        if kind == "piece":
            return simple(_blob_local(rng, length, w, 0.18, n=12), kind, w)
        return simple(_rounded_rect_local(length, w, 0.12 * w), kind, w)
    if cls == BAG:
        w = length * rng.uniform(0.55, 0.95)
        body = _blob_local(rng, length, w, rng.uniform(0.02, 0.08), n=48)
        parts = [body]
        if rng.random() < 0.45:  # one or two handles: thin loops rooted in the bag's far end
            for offset in (-0.15, 0.15)[: int(rng.integers(1, 3))]:
                near = body[np.abs(body[:, 1] - offset * w) < 0.2 * w]
                root = (near[:, 0].max() if len(near) else 0.4 * length) - thin
                parts.append(_arc_strip_local(root, offset * w, rng.uniform(0.1, 0.2) * w,
                                              thin * rng.uniform(1, 1.8), -0.5 * np.pi, 0.5 * np.pi))
        return Shape([_to_image(p, cx, cy, angle) for p in parts], cx, cy, angle, length, w, "bag")
    if cls == BATTERY:
        if rng.random() < 0.25:  # coin cell
            length *= 0.7
            return simple(_blob_local(rng, length, length, 0.0), "coin", length)
        w = length * rng.uniform(0.28, 0.4)
        body = _rounded_rect_local(0.9 * length, w, 0.2 * w) - [0.05 * length, 0]
        # the + terminal: a small step on the body's +x edge, which the outline ends on
        end, half = body[:, 0].max(), 0.2 * w
        terminal = [[end, -half], [end + 0.1 * length, -half], [end + 0.1 * length, half], [end, half]]
        return simple(np.concatenate([body, terminal]), "battery", w)
    # CLOTHING
    w = length * rng.uniform(0.6, 0.95)
    if rng.random() < 0.5:
        return simple(_tshirt_local(rng, length, w), "shirt", w)
    return simple(_blob_local(rng, length, w, 0.1, n=36), "heap", w)
