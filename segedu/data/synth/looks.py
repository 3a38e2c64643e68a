"""What each class looks like: colours, textures and the light on an object, painted in its own (u, v) frame."""
from __future__ import annotations

import colorsys
import dataclasses
import math

import cv2
import numpy as np

from .shapes import BAG, BATTERY, CLOTHING, GENERAL, GLASS, METAL, PACK, PAPER, PLASTIC, STYRO, Shape, _pick


# ============================================================================ texture and colour helpers

def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise of roughly unit amplitude whose blobs are about ``cell`` pixels wide."""
    if cell <= 1.0:
        return rng.standard_normal((h, w), dtype=np.float32)
    grid = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """An RGB colour (float32, 0..1) from hue (wrapped), saturation and value (clipped to 0..1)."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), np.float32)


def _jitter(rng: np.random.Generator, rgb: np.ndarray, amount: float = 0.05) -> np.ndarray:
    """A colour with each channel scaled by 1 +- ``amount`` (no two bottles are the same green)."""
    return np.clip(rgb * (1 + amount * rng.standard_normal(3)), 0, 1).astype(np.float32)


# ============================================================================ looks (textures)

@dataclasses.dataclass
class _Crop:
    """The bounding-box window of the image an object is painted into, with its frame coordinates."""

    x0: int
    y0: int
    u: np.ndarray  # along the object, -1..1 over its length
    v: np.ndarray  # across it, -1..1 over its width

    @property
    def hw(self) -> tuple[int, int]:
        return self.u.shape

    @classmethod
    def of(cls, shape: Shape, x0: int, y0: int, x1: int, y1: int) -> "_Crop":
        ys, xs = (g.astype(np.float32) + 0.5 for g in np.ogrid[y0:y1, x0:x1])
        dx, dy = xs - shape.cx, ys - shape.cy
        c, s = math.cos(shape.angle), math.sin(shape.angle)
        return cls(x0, y0, (dx * c + dy * s) / (0.5 * shape.length), (-dx * s + dy * c) / (0.5 * shape.width))


PAPER_COLOURS = {(0.92, 0.92, 0.9): 4, (0.93, 0.89, 0.78): 2, (0.74, 0.74, 0.72): 1, (0.62, 0.47, 0.32): 2.5,
                 (0.82, 0.81, 0.76): 1}
METAL_SILVER = np.array((0.78, 0.78, 0.8), np.float32)
CAN_COLOURS = {(0.75, 0.1, 0.1): 3, (0.1, 0.25, 0.7): 2, (0.8, 0.65, 0.25): 1, (0.1, 0.5, 0.2): 1,
               (0.12, 0.12, 0.12): 1}


def _fill(crop: _Crop, rgb) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.float32), (*crop.hw, 3)).copy()


def _lit(rgb: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return rgb * factor[..., None]


def _paper_colour(rng) -> np.ndarray:
    if rng.random() < 0.08:  # coloured paper
        return _hsv(rng.random(), rng.uniform(0.15, 0.45), rng.uniform(0.75, 0.95))
    return _jitter(rng, np.array(_pick(rng, PAPER_COLOURS), np.float32), 0.04)


def _print_colour(rng) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.5, 0.95), rng.uniform(0.35, 0.9))


def _text_rows(rng, crop: _Crop, shape: Shape, extent: float = 0.8) -> np.ndarray:
    """Where printed text is: rows of dashes across the object (a boolean map)."""
    spacing = max(2.5, rng.uniform(0.05, 0.12) * shape.width)
    rows = ((crop.v * 0.5 * shape.width / spacing) % 1.0) < 0.4
    words = _noise(rng, *crop.hw, max(1.5, spacing)) > -0.2
    return rows & words & (np.abs(crop.u) < extent) & (np.abs(crop.v) < extent)


def _creases(rng, crop: _Crop, count: int, strength: float) -> np.ndarray:
    """Light/dark fold lines, as a brightness offset map."""
    h, w = crop.hw
    out = np.zeros((h, w), np.float32)
    for _ in range(count):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(out, p0, p1, float(rng.choice([-1.0, 1.0]) * strength), 1)
    return cv2.GaussianBlur(out, (3, 3), 0.7) if count else out


def _cylinder(crop: _Crop, rng, gloss: float) -> np.ndarray:
    """Brightness of a shiny cylinder across ``v``: darker towards the rims, one specular stripe."""
    body = 0.45 + 0.55 * np.sqrt(np.clip(1 - crop.v ** 2, 0, 1))
    stripe = gloss * np.exp(-(((crop.v - rng.uniform(-0.6, 0.6)) / rng.uniform(0.08, 0.18)) ** 2))
    return body + stripe


def _look_paper(rng, crop, shape):
    rgb = _fill(crop, _paper_colour(rng))
    if rng.random() < 0.45:  # printed or written on
        rgb[_text_rows(rng, crop, shape)] = _jitter(rng, np.array((0.2, 0.2, 0.25), np.float32), 0.2)
    crumple = 0.22 if shape.kind == "crumpled" else 0.08
    light = 1 + crumple * _noise(rng, *crop.hw, max(2.0, 0.12 * shape.width))
    light += _creases(rng, crop, int(rng.integers(0, 5)), 0.12)
    return _lit(rgb, light), 1.0


def _look_pack(rng, crop, shape):
    base = _jitter(rng, np.array(_pick(rng, PAPER_COLOURS), np.float32), 0.04)
    light = np.ones(crop.hw, np.float32)
    offset = np.array([crop.x0, crop.y0])
    for polygon, brightness in shape.faces:
        cv2.fillPoly(light, [np.round(polygon - offset).astype(np.int32)], float(brightness))
    for polygon, _ in shape.faces:  # folds along the box edges
        cv2.polylines(light, [np.round(polygon - offset).astype(np.int32)], True, 0.62, 1)
    if shape.kind == "flat_pack":
        for fold in rng.uniform(-0.7, 0.7, int(rng.integers(1, 3))):
            light[np.abs(crop.u - fold) < 0.025] = 0.7
    light += 0.05 * _noise(rng, *crop.hw, max(2.0, 0.2 * shape.width))
    rgb = _fill(crop, base)
    if rng.random() < 0.85:  # a printed band and a logo: what tells a carton from paper
        start = rng.uniform(-1, 0.2)
        band = (crop.u > start) & (crop.u < start + rng.uniform(0.3, 0.8))
        rgb[band] = _print_colour(rng)
        logo = (crop.u - rng.uniform(-0.5, 0.5)) ** 2 + (crop.v - rng.uniform(-0.4, 0.4)) ** 2 < rng.uniform(0.03, 0.1)
        rgb[logo] = _print_colour(rng)
    if rng.random() < 0.5:
        rgb[_text_rows(rng, crop, shape, 0.7)] = (0.15, 0.15, 0.2)
    return _lit(rgb, light), 1.0


def _look_metal(rng, crop, shape):
    if rng.random() < 0.4:  # a printed can: a few brand colours, as on a real shelf
        base = _jitter(rng, np.array(_pick(rng, CAN_COLOURS), np.float32))
    else:
        base = _jitter(rng, METAL_SILVER * rng.uniform(0.75, 1.05), 0.03)
    rgb = _fill(crop, base)
    if shape.kind == "top":
        r = np.sqrt(crop.u ** 2 + crop.v ** 2)
        rgb[:] = METAL_SILVER
        light = 0.8 + 0.3 * np.cos(6 * r) + 0.4 * np.exp(-((crop.u - 0.3) ** 2 + (crop.v + 0.3) ** 2) / 0.05)
        light[np.abs(r - 0.85) < 0.06] = 0.55
        return _lit(rgb, light), 1.0
    light = _cylinder(crop, rng, 0.8)
    rgb[np.abs(crop.u) > 0.86] = METAL_SILVER  # rims
    if shape.kind == "crushed":
        light = light * (0.7 + 0.35 * _noise(rng, *crop.hw, max(1.5, 0.1 * shape.width)))
    return _lit(rgb, light) + 0.25 * (light > 1.1)[..., None], 1.0


def _look_glass(rng, crop, shape):
    tint = _pick(rng, {"green": 4, "brown": 3, "clear": 3, "blue": 1})
    base = {"green": (0.18, 0.42, 0.2), "brown": (0.38, 0.22, 0.08), "clear": (0.78, 0.86, 0.86),
            "blue": (0.15, 0.3, 0.5)}[tint]
    rgb = _fill(crop, _jitter(rng, np.array(base, np.float32)))
    alpha = np.full(crop.hw, rng.uniform(0.55, 0.7) if tint == "clear" else rng.uniform(0.75, 0.9), np.float32)
    light = 0.7 + 0.5 * np.abs(crop.v) ** 3 * (rng.random() < 0.5)  # thick glass shows at the edges
    highlight = np.exp(-(((crop.v - rng.uniform(-0.5, 0.5)) / 0.1) ** 2))
    rgb = _lit(rgb, light) + 0.6 * highlight[..., None]
    alpha = np.maximum(alpha, 0.8 * highlight)
    if shape.kind == "bottle" and rng.random() < 0.5:  # a paper label
        label = (crop.u > rng.uniform(-0.8, -0.5)) & (crop.u < rng.uniform(-0.1, 0.2))
        rgb[label] = _lit(_fill(crop, _paper_colour(rng)), _cylinder(crop, rng, 0.1))[label]
        rgb[label & _text_rows(rng, crop, shape)] = _print_colour(rng)
        alpha[label] = 1.0
    if shape.kind == "jar":
        lid = crop.u > 0.8
        rgb[lid], alpha[lid] = METAL_SILVER * 0.9, 1.0
    return rgb, alpha


def _look_plastic(rng, crop, shape):
    clear = _pick(rng, {(0.82, 0.88, 0.92): 3, (0.6, 0.78, 0.92): 2, (0.72, 0.86, 0.76): 1})
    if shape.kind == "bottle" or (shape.kind == "piece" and rng.random() < 0.5):
        rgb = _fill(crop, _jitter(rng, np.array(clear, np.float32)))
        alpha = np.full(crop.hw, rng.uniform(0.35, 0.6), np.float32)
        ridges = 1 + 0.15 * np.cos(crop.u * rng.uniform(15, 30))
        highlight = np.exp(-(((crop.v - rng.uniform(-0.5, 0.5)) / 0.12) ** 2))
        rgb = _lit(rgb, ridges) + 0.5 * highlight[..., None]
        alpha = np.maximum(alpha, 0.7 * highlight)
        if shape.kind == "bottle":
            cap = crop.u > 0.86
            rgb[cap], alpha[cap] = _print_colour(rng), 1.0
            if rng.random() < 0.6:
                band = np.abs(crop.u - rng.uniform(-0.5, 0.0)) < rng.uniform(0.1, 0.3)
                rgb[band], alpha[band] = _lit(_fill(crop, _print_colour(rng)), _cylinder(crop, rng, 0.2))[band], 1.0
        return rgb, alpha
    opaque = _pick(rng, {"white": 3, "print": 3, "black": 1})
    base = {"white": np.array((0.9, 0.9, 0.88), np.float32), "black": np.array((0.12, 0.12, 0.13), np.float32),
            "print": _print_colour(rng)}[opaque]
    light = np.ones(crop.hw, np.float32)
    offset = np.array([crop.x0, crop.y0])
    for polygon, brightness in shape.faces:
        cv2.fillPoly(light, [np.round(polygon - offset).astype(np.int32)], float(brightness))
    light += 0.1 * np.exp(-(((crop.u - rng.uniform(-0.6, 0.6)) / 0.15) ** 2))
    return _lit(_fill(crop, _jitter(rng, base)), light), rng.uniform(0.85, 1.0)


def _look_styrofoam(rng, crop, shape):
    base = _jitter(rng, np.array((0.95, 0.95, 0.93), np.float32) * rng.uniform(0.92, 1.03), 0.02)
    light = 1 + 0.05 * _noise(rng, *crop.hw, 1.0) + 0.04 * _noise(rng, *crop.hw, 2.5)  # the beads
    if shape.kind == "tray":
        light -= 0.1 * ((np.abs(crop.u) < 0.82) & (np.abs(crop.v) < 0.75))
    offset = np.array([crop.x0, crop.y0])
    for polygon, brightness in shape.faces:
        face = np.ones(crop.hw, np.float32)
        cv2.fillPoly(face, [np.round(polygon - offset).astype(np.int32)], float(0.5 + 0.5 * brightness))
        light *= face
    return _lit(_fill(crop, base), light), 1.0


def _look_bag(rng, crop, shape):
    tint = _pick(rng, {"white": 4, "black": 2.5, "blue": 1.5, "clear": 2, "colour": 1})
    base = {"white": np.array((0.9, 0.9, 0.9), np.float32), "black": np.array((0.1, 0.1, 0.12), np.float32),
            "blue": np.array((0.3, 0.45, 0.8), np.float32), "clear": np.array((0.82, 0.86, 0.9), np.float32),
            "colour": _print_colour(rng)}[tint]
    alpha = {"clear": rng.uniform(0.4, 0.6), "white": rng.uniform(0.6, 0.85)}.get(tint, rng.uniform(0.8, 0.97))
    theta = rng.uniform(0, np.pi)
    along = (crop.u * math.cos(theta) * shape.length + crop.v * math.sin(theta) * shape.width) / 2
    warp = 6 * _noise(rng, *crop.hw, max(2.0, 0.15 * shape.width))
    stripes = np.sin(along / max(1.5, rng.uniform(0.02, 0.05) * shape.width) + warp)
    glints = np.clip((stripes - 0.8) / 0.2, 0, 1)  # the crinkles catch the light
    light = 1 + 0.18 * _noise(rng, *crop.hw, max(2.0, 0.1 * shape.width)) + 0.1 * stripes
    rgb = _lit(_fill(crop, _jitter(rng, base)), light) + 0.45 * glints[..., None]
    if rng.random() < 0.3:  # a shop's logo
        logo = (crop.u - rng.uniform(-0.3, 0.3)) ** 2 + crop.v ** 2 < rng.uniform(0.05, 0.15)
        rgb[logo] = _print_colour(rng)
    return rgb, np.maximum(alpha, 0.9 * glints)


def _look_battery(rng, crop, shape):
    if shape.kind == "coin":
        r2 = crop.u ** 2 + crop.v ** 2
        light = 0.75 + 0.35 * np.exp(-((crop.u + 0.3) ** 2 + (crop.v + 0.3) ** 2) / 0.1) - 0.2 * (r2 > 0.7)
        return _lit(_fill(crop, METAL_SILVER), light), 1.0
    body = _pick(rng, {(0.1, 0.1, 0.1): 3, (0.75, 0.5, 0.2): 2, (0.15, 0.3, 0.7): 1, (0.15, 0.5, 0.25): 1,
                       (0.75, 0.75, 0.78): 1, (0.7, 0.12, 0.1): 1})
    rgb = _fill(crop, _jitter(rng, np.array(body, np.float32)))
    end = crop.u > rng.uniform(0.2, 0.5)
    rgb[end] = _pick(rng, {(0.8, 0.55, 0.2): 2, (0.85, 0.75, 0.3): 1, (0.75, 0.75, 0.78): 1, (0.2, 0.2, 0.2): 1})
    rgb[crop.u > 0.86] = METAL_SILVER
    light = _cylinder(crop, rng, 0.5)
    return _lit(rgb, light) + 0.2 * (light > 1.0)[..., None], 1.0


def _look_clothing(rng, crop, shape):
    fabric = _pick(rng, {"solid": 4, "denim": 2, "stripes": 2, "checks": 1})
    if fabric == "denim":
        base = _jitter(rng, np.array((0.2, 0.3, 0.52), np.float32), 0.1)
    else:
        base = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.9))
    rgb = _fill(crop, base)
    if fabric in ("stripes", "checks"):
        period = rng.uniform(0.1, 0.3)
        pattern = np.sin(crop.u / period * np.pi) > 0
        if fabric == "checks":
            pattern ^= np.sin(crop.v / period * np.pi) > 0
        rgb[pattern] = _hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.95))
    folds = 1 + 0.25 * _noise(rng, *crop.hw, max(2.0, 0.12 * shape.width))
    weave = 0.06 * _noise(rng, *crop.hw, 1.0) * (1.5 if fabric == "denim" else 1.0)
    return _lit(rgb, folds + weave), 1.0


def _look_general(rng, crop, shape):
    if shape.kind == "food":
        base = _hsv(rng.uniform(0.02, 0.25), rng.uniform(0.4, 0.9), rng.uniform(0.25, 0.8))
        light = 1 + 0.25 * _noise(rng, *crop.hw, max(1.5, 0.08 * shape.width)) - 0.3 * (_noise(rng, *crop.hw, 2.0) > 1.2)
        return _lit(_fill(crop, base), light), 1.0
    if shape.kind == "tissue":  # white and crumpled, like paper
        light = 1 + 0.15 * _noise(rng, *crop.hw, max(2.0, 0.1 * shape.width)) + 0.05 * _noise(rng, *crop.hw, 1.0)
        return _lit(_fill(crop, _jitter(rng, np.array((0.93, 0.93, 0.92), np.float32), 0.02)), light), 1.0
    if shape.kind == "wrapper":  # shiny, printed, many colours
        hue = rng.random() + 0.25 * _noise(rng, *crop.hw, max(2.0, 0.3 * shape.width))
        rgb = np.stack([hue % 1.0, np.full_like(hue, 0.75), np.full_like(hue, 0.85)], -1)
        rgb = cv2.cvtColor((rgb * [180, 255, 255]).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255
        glints = np.clip(_noise(rng, *crop.hw, max(1.5, 0.05 * shape.width)) - 0.8, 0, 1)
        return rgb + glints[..., None], 1.0
    if shape.kind == "butt":
        rgb = _fill(crop, (0.92, 0.9, 0.86))
        rgb[crop.u < -0.2] = _jitter(rng, np.array((0.8, 0.55, 0.3), np.float32))
        return rgb, 1.0
    # a face mask: pale, pleated, white straps
    rgb = _fill(crop, _pick(rng, {(0.62, 0.78, 0.92): 2, (0.93, 0.93, 0.93): 1, (0.2, 0.2, 0.22): 1}))
    pleats = 1 - 0.12 * (np.sin(crop.v * 9) > 0.6)
    rgb = _lit(rgb, pleats)
    rgb[np.abs(crop.u) > 1.0] = (0.95, 0.95, 0.95)
    return rgb, 1.0


LOOKS = {
    GENERAL: _look_general, PAPER: _look_paper, PACK: _look_pack, METAL: _look_metal, GLASS: _look_glass,
    PLASTIC: _look_plastic, STYRO: _look_styrofoam, BAG: _look_bag, BATTERY: _look_battery, CLOTHING: _look_clothing,
}
#: Classes whose look General trash borrows (it is the competition's catch-all class).
BORROWED_LOOKS = (PAPER, PACK, METAL, PLASTIC, STYRO, BAG, GLASS)
