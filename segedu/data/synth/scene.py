"""One image: which classes each image shows, the photo sessions' backgrounds, clutter and lighting, and rendering."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..classes import CLASSES, NUM_CLASSES, PALETTE
from .looks import BORROWED_LOOKS, LOOKS, _Crop, _hsv, _noise, _print_colour
from . import versions
from .shapes import GENERAL, Shape, _blob_local, _loguniform, _make_shape, _pick, _to_image


# ============================================================================ backgrounds and clutter

def _soft(layer: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones are done at a lower resolution (a soft shadow needs no fine detail)."""
    factor = int(sigma // 3)
    if factor < 2 or min(layer.shape) < 4 * factor:
        return cv2.GaussianBlur(layer, (0, 0), sigma)
    h, w = layer.shape
    small = cv2.resize(layer, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / factor), (w, h), interpolation=cv2.INTER_LINEAR)


#: Background kinds per batch folder, with weights: each batch is a different "photo session".
BATCH_BACKGROUNDS = (
    {"tiles": 3, "wood": 3, "concrete": 2, "gradient": 1, "cloth": 1},
    {"carpet": 3, "wood": 2, "gradient": 2, "cloth": 2, "tiles": 1},
    {"concrete": 3, "asphalt": 3, "carpet": 1, "gradient": 1},
)
#: Mean brightness of each batch's lighting.
BATCH_LIGHT = (1.0, 0.95, 0.82)


def _background(rng, size: int, batch: int) -> np.ndarray:
    """A floor / table / wall-like texture filling the image (float RGB in 0..1)."""
    kind = _pick(rng, BATCH_BACKGROUNDS[batch])
    ys, xs = (g.astype(np.float32) for g in np.ogrid[0:size, 0:size])
    a = rng.uniform(0, np.pi)
    along, across = xs * math.cos(a) + ys * math.sin(a), -xs * math.sin(a) + ys * math.cos(a)
    fine = _noise(rng, size, size, 1.0)
    if kind == "wood":
        base = _hsv(rng.uniform(0.05, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.75))
        grain = np.sin(2 * np.pi * across / (size * rng.uniform(0.03, 0.08)) + 3 * _noise(rng, size, size, size / 5))
        plank = size * rng.uniform(0.15, 0.35)
        light = 1 + 0.1 * grain + 0.03 * fine - 0.3 * ((across % plank) < max(1.0, size / 200))
    elif kind == "tiles":
        base = _hsv(rng.random(), rng.uniform(0, 0.2), rng.uniform(0.6, 0.95))
        tile = size * rng.uniform(0.14, 0.33)
        index = (np.floor(xs / tile) * 7 + np.floor(ys / tile) * 13) % 5
        grout = ((xs % tile) < max(1.0, size / 150)) | ((ys % tile) < max(1.0, size / 150))
        light = 1 + 0.03 * (index - 2) + 0.03 * fine - rng.uniform(-0.3, 0.4) * grout
    elif kind == "cloth":  # a checked tablecloth: looks like clothing, is background
        base = _hsv(rng.random(), rng.uniform(0.3, 0.7), rng.uniform(0.5, 0.9))
        period = size * rng.uniform(0.04, 0.1)
        checks = (np.sin(along / period * np.pi) > 0) ^ (np.sin(across / period * np.pi) > 0)
        light = 1 - 0.3 * checks + 0.04 * fine
    elif kind == "carpet":
        base = _hsv(rng.random(), rng.uniform(0.15, 0.6), rng.uniform(0.2, 0.6))
        light = 1 + 0.2 * fine + 0.1 * _noise(rng, size, size, size / 8)
    elif kind == "asphalt":
        base = _hsv(rng.random(), rng.uniform(0, 0.08), rng.uniform(0.2, 0.4))
        light = 1 + 0.3 * fine + 0.1 * _noise(rng, size, size, size / 6)
    elif kind == "gradient":
        base = _hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.4, 0.9))
        other = _hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.3, 0.9))
        t = (along / size).clip(0, 1)[..., None]
        return ((1 - t) * base + t * other) * (1 + 0.03 * fine)[..., None]
    else:  # concrete or a wall
        base = _hsv(rng.uniform(0.05, 0.15), rng.uniform(0, 0.12), rng.uniform(0.4, 0.75))
        light = 1 + 0.12 * _noise(rng, size, size, size / 6) + 0.08 * _noise(rng, size, size, size / 30) + 0.05 * fine
    return base * light[..., None]


def _blend(img: np.ndarray, layer: np.ndarray, colour, alpha: float) -> None:
    """Mix ``colour`` into ``img`` where ``layer`` is set (only inside the layer's bounding box)."""
    x, y, w, h = cv2.boundingRect(layer)
    window, inside = img[y:y + h, x:x + w], layer[y:y + h, x:x + w] > 0
    window[inside] += alpha * (np.asarray(colour, np.float32) - window[inside])


def _clutter(rng, img: np.ndarray) -> None:
    """Background things that are not trash: stains, cables, crumbs, floor tape, reflections."""
    size = img.shape[0]
    for _ in range(int(rng.poisson(4))):
        kind = _pick(rng, {"stain": 3, "cable": 2, "crumbs": 2, "tape": 1, "reflection": 1, "ghost": 0.5})
        layer = np.zeros((size, size), np.uint8)
        centre = rng.uniform(0, size, 2)
        if kind in ("stain", "ghost"):
            r = size * _loguniform(rng, 0.03, 0.2)
            outline = _to_image(_blob_local(rng, r, r * rng.uniform(0.4, 1), 0.1), *centre, rng.uniform(0, 6.3))
            cv2.fillPoly(layer, [np.round(outline).astype(np.int32)], 1)
            # a ghost is a faint, object-coloured print on the floor (a poster, a pattern)
            colour = _print_colour(rng) if kind == "ghost" else _hsv(rng.uniform(0, 0.15), 0.5, rng.uniform(0.1, 0.4))
            _blend(img, layer, colour, rng.uniform(0.15, 0.4))
        elif kind == "cable":
            points = np.cumsum(rng.normal(0, size * 0.15, (int(rng.integers(3, 7)), 2)), axis=0) + centre
            cv2.polylines(layer, [np.round(points).astype(np.int32)], False, 1, int(rng.integers(1, 3) * max(1, size // 256)))
            _blend(img, layer, _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.05, 0.9)), 0.9)
        elif kind == "crumbs":
            for point in rng.normal(centre, size * 0.08, (int(rng.integers(3, 12)), 2)):
                cv2.circle(layer, tuple(int(c) for c in point), int(rng.integers(1, 3)), 1, -1)
            _blend(img, layer, _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.3, 0.95)), 0.9)
        elif kind == "tape":
            direction = rng.normal(0, 1, 2)
            direction /= np.linalg.norm(direction) + 1e-9
            ends = np.array([centre - direction * size, centre + direction * size])
            cv2.line(layer, *(tuple(int(c) for c in e) for e in ends), 1, max(2, int(size * rng.uniform(0.01, 0.03))))
            _blend(img, layer, _pick(rng, {(0.9, 0.8, 0.15): 2, (0.9, 0.9, 0.88): 1, (0.1, 0.1, 0.1): 1}), 0.85)
        else:
            axes = tuple(int(a) for a in size * rng.uniform(0.05, 0.2, 2))
            cv2.ellipse(layer, tuple(int(c) for c in centre), axes, rng.uniform(0, 180), 0, 360, 1, -1)
            soft = _soft(layer.astype(np.float32), max(1.0, axes[0] / 3))
            img += 0.25 * soft[..., None]


# ============================================================================ one image

def _lighting(rng, img: np.ndarray, batch: int) -> np.ndarray:
    """What the camera adds: uneven light, a colour cast, a cast shadow, blur, sensor noise."""
    size = img.shape[0]
    ys, xs = (g.astype(np.float32) / size - 0.5 for g in np.ogrid[0:size, 0:size])
    gain = BATCH_LIGHT[batch] * rng.uniform(0.8, 1.12)
    field = gain * (1 + rng.uniform(-0.4, 0.4) * xs + rng.uniform(-0.4, 0.4) * ys
                    + 0.12 * _noise(rng, size, size, size / 3))
    if rng.random() < 0.35:  # the shadow of something outside the frame
        layer = np.zeros((size, size), np.float32)
        outline = _to_image(_blob_local(rng, size * 0.9, size * 0.5, 0.05), *rng.uniform(0, size, 2), rng.uniform(0, 6.3))
        cv2.fillPoly(layer, [np.round(outline).astype(np.int32)], 1.0)
        field *= 1 - rng.uniform(0.25, 0.5) * _soft(layer, size / 40)
    img = img * field[..., None] * (1 + 0.06 * rng.standard_normal(3)).astype(np.float32)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.1) * size / 256)
    grain = rng.uniform(0.005, 0.03) * rng.standard_normal((size, size, 1), dtype=np.float32)
    return img + grain  # sensor noise, in brightness


def _outline_polygons(shape: Shape, size: int) -> list[list[float]]:
    """The annotation's polygons: clipped to the image, rounded to 0.1 px, degenerate parts dropped."""
    polygons = []
    for part in shape.parts:
        pts = np.round(np.clip(part, 0, size), 1)
        x, y = pts[:, 0], pts[:, 1]
        if 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) >= 1.0:
            polygons.append(pts.ravel().tolist())
    return polygons


@dataclasses.dataclass
class _Object:
    cls: int
    look_of: int
    shape: Shape
    polygons: list[list[float]]
    rle: dict
    area: float


def _sample_object(rng, cls: int, size: int, version: str = versions.GENERATOR_VERSION) -> _Object | None:
    """An object of class ``cls`` big enough to see; None if a few tries all fell off the image."""
    min_area = max(6.0, 12.0 * (size / 256) ** 2)
    for _ in range(8):
        look_of = int(rng.choice(BORROWED_LOOKS)) if cls == GENERAL and rng.random() < 0.45 else cls
        shape = _make_shape(cls, rng, size, look_of, version)
        polygons = _outline_polygons(shape, size)
        if not polygons:
            continue
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, size, size))
        area = float(mask_utils.area(rle))
        if area >= min_area:
            return _Object(cls, look_of, shape, polygons, rle, area)
    return None


def _render(seed: int, index: int, size: int, classes: list[int], batch: int, flat: bool,
            version: str = versions.GENERATOR_VERSION):
    """Draw image ``index`` as generator ``version`` draws it: returns (uint8 RGB image, annotations,
    visible pixels per class)."""
    rng = np.random.default_rng([seed, index])
    objects = [o for o in (_sample_object(rng, c, size, version) for c in classes) if o is not None]
    objects.sort(key=lambda o: -o.area)  # largest first: the order a mask loader paints them in
    if flat:
        img = np.zeros((size, size, 3), np.float32)
    else:
        img = _background(rng, size, batch).astype(np.float32)
        _clutter(rng, img)
    labels = np.zeros((size, size), np.uint8)
    light_dir = rng.normal(0, 1, 2)
    light_dir /= np.linalg.norm(light_dir) + 1e-9
    annotations = []
    for obj in objects:
        mask = mask_utils.decode(obj.rle).astype(bool)
        x, y, w, h = mask_utils.toBbox(obj.rle)
        x0, y0, x1, y1 = int(x), int(y), min(size, int(math.ceil(x + w))), min(size, int(math.ceil(y + h)))
        inside = mask[y0:y1, x0:x1]
        if flat:
            img[y0:y1, x0:x1][inside] = PALETTE[obj.cls] / 255.0
        else:
            _drop_shadow(rng, img, inside, x0, y0, obj.shape, light_dir)
            rgb, alpha = LOOKS[obj.look_of](rng, _Crop.of(obj.shape, x0, y0, x1, y1), obj.shape)
            rgb = rgb * (1 + 0.05 * rng.standard_normal(3)).astype(np.float32)
            alpha = np.broadcast_to(np.asarray(alpha, np.float32), inside.shape)[inside][:, None]
            region = img[y0:y1, x0:x1]
            region[inside] += alpha * (rgb[inside] - region[inside])
        labels[y0:y1, x0:x1][inside] = obj.cls
        annotations.append((obj.cls, obj.polygons, obj.area, [float(v) for v in (x, y, w, h)]))
    if not flat:
        img = _lighting(rng, img, batch)
    pixels = np.bincount(labels.ravel(), minlength=NUM_CLASSES)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), annotations, pixels


def _drop_shadow(rng, img: np.ndarray, inside: np.ndarray, x0: int, y0: int, shape: Shape,
                 light_dir: np.ndarray) -> None:
    """Darken the floor beside an object, away from the light, before the object is painted.

    ``inside`` is the object's mask within its box at (``x0``, ``y0``); the work is done in that
    box grown by the shadow's offset and blur, not over the whole image.
    """
    size = img.shape[0]
    dx, dy = light_dir * shape.width * rng.uniform(0.05, 0.15)
    sigma = max(0.8, 0.05 * shape.width)
    pad = int(abs(dx) + abs(dy) + 3 * sigma) + 1
    h, w = inside.shape
    ex0, ey0, ex1, ey1 = max(0, x0 - pad), max(0, y0 - pad), min(size, x0 + w + pad), min(size, y0 + h + pad)
    local = np.zeros((ey1 - ey0, ex1 - ex0), np.float32)
    local[y0 - ey0:y0 - ey0 + h, x0 - ex0:x0 - ex0 + w] = inside
    shifted = cv2.warpAffine(local, np.float32([[1, 0, dx], [0, 1, dy]]), (ex1 - ex0, ey1 - ey0))
    img[ey0:ey1, ex0:ex1] *= 1 - rng.uniform(0.2, 0.45) * _soft(shifted, sigma)[..., None]


# ============================================================================ which classes each image shows

#: Instances per class in the competition's train_all.json (3272 images); the generator keeps these ratios.
COMPETITION_INSTANCES = {
    "General trash": 2782, "Paper": 9311, "Paper pack": 659, "Metal": 562, "Glass": 610,
    "Plastic": 3090, "Styrofoam": 1343, "Plastic bag": 7643, "Battery": 63, "Clothing": 177,
}
COMPETITION_IMAGES = 3272


def planned_instances(version: str = versions.GENERATOR_VERSION) -> dict[str, int]:
    """The instance counts generator ``version`` deals from: :data:`COMPETITION_INSTANCES`, Battery's
    times its :data:`~segedu.data.synth.versions.BATTERY` ``share``."""
    return {name: count * (versions.BATTERY[version]["share"] if name == "Battery" else 1)
            for name, count in COMPETITION_INSTANCES.items()}


def plan_classes(n_images: int, seed: int, stream: int = 0,
                 version: str = versions.GENERATOR_VERSION) -> list[list[int]]:
    """Which classes each image shows: the competition's instance ratios, dealt out like cards
    (Battery's times :data:`~segedu.data.synth.versions.BATTERY`'s ``share`` of ``version``).

    Objects per image are 1 + Poisson(gamma-distributed mean), a long tail like the real photos'
    (mean about 8). The deck holds each class ``round(share * total)`` times, but at least once,
    so that even a small dataset has every class, and is shuffled before dealing. ``stream``
    tells independent plans with the same seed apart (the annotated and the test images).
    """
    rng = np.random.default_rng([seed, 1, stream])
    instances = planned_instances(version)
    mean_extra = sum(instances.values()) / COMPETITION_IMAGES - 1
    counts = np.minimum(1 + rng.poisson(rng.gamma(2.0, mean_extra / 2.0, n_images)), 30)
    share = np.array([instances[name] for name in CLASSES[1:]], float)
    share /= share.sum()
    total = int(counts.sum())
    if total < len(share):
        deck = rng.choice(np.arange(1, NUM_CLASSES), size=total, p=share)
    else:
        quota = np.maximum(1, np.round(share * total)).astype(int)
        quota[int(np.argmax(quota))] += total - quota.sum()  # the largest class absorbs the rounding
        deck = rng.permutation(np.repeat(np.arange(1, NUM_CLASSES), quota))
    return [part.tolist() for part in np.split(deck, np.cumsum(counts)[:-1])]
