"""Drawing the synthetic benchmark's pictures: actors (striped lobed blobs, or bordered polygons), panning
backgrounds (1/f noise, or colour gratings) and compositing an actor along its track. Used by
:mod:`raycondi.datasets.synthetic`, which decides what to draw; every draw comes from the generator passed in, in
a fixed order, so a seed gives the same pictures."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Actor", "Scene", "colour", "draw_actor", "grating", "paint", "scene", "texture"]


@dataclass(frozen=True)
class Actor:
    radius: float  # stage units at scale 1
    aspect: float  # y extent / x extent
    lobes: int
    lobe_depth: float
    stripes: float  # cycles per radius
    stripe_angle: float
    colours: np.ndarray  # (2, 3) float32 in [0, 255]
    sides: int = 0  # a polygon with a border (look "shapes"), or 0: the lobed striped blob


def colour(rng: np.random.Generator, bright: bool) -> np.ndarray:
    """A saturated colour, bright or dark."""
    hue = rng.uniform(0, 1)
    rgb = np.clip(np.abs((hue * 6 + np.array([0.0, 4.0, 2.0])) % 6 - 3) - 1, 0, 1)  # HSV hue, full saturation
    rgb = 1 - rng.uniform(0.55, 0.9) * (1 - rgb)
    value = rng.uniform(0.85, 1.0) if bright else rng.uniform(0.2, 0.35)
    return (255 * value * rgb).astype(np.float32)


def draw_actor(rng: np.random.Generator, bright: bool, look: str = "blobs") -> Actor:
    c = colour(rng, bright)
    second = c * rng.uniform(0.35, 0.55) if bright else c + (255 - c) * rng.uniform(0.35, 0.55)
    if look == "shapes":
        return Actor(radius=rng.uniform(0.12, 0.17), aspect=rng.uniform(0.7, 1.0), lobes=0, lobe_depth=0.0,
                      stripes=0.0, stripe_angle=0.0, colours=np.stack([c, second]).astype(np.float32),
                      sides=int(rng.integers(3, 7)))
    return Actor(
        radius=rng.uniform(0.11, 0.16),
        aspect=rng.uniform(0.55, 0.95),
        lobes=int(rng.choice([0, 3, 4, 5])),
        lobe_depth=rng.uniform(0.1, 0.25),
        stripes=rng.uniform(0.8, 1.6),
        stripe_angle=rng.uniform(0, math.pi),
        colours=np.stack([c, second]).astype(np.float32),
    )


def texture(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
    """Periodic (tileable) noise with a 1/f**beta spectrum, zero mean, unit std, shape (h, w)."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f**beta
    spectrum[0, 0] = 0
    tex = np.fft.irfft2(spectrum, s=(h, w))
    return (tex / tex.std()).astype(np.float32)


@dataclass(frozen=True)
class Scene:
    """A panning picture: frame t shows a periodic coloured texture shifted by t * velocity (wrapping)."""

    tiles: np.ndarray  # (2h, 2w, 3) float32: the (h, w) texture tiled twice each way, for wrap-free slicing
    velocity: tuple[float, float]  # pixels per frame (x, y)

    def frames(self, t: np.ndarray, height: int, width: int) -> np.ndarray:
        th, tw = self.tiles.shape[0] // 2, self.tiles.shape[1] // 2
        oy = np.round(t * self.velocity[1]).astype(np.int64) % th
        ox = np.round(t * self.velocity[0]).astype(np.int64) % tw
        return np.stack([self.tiles[y : y + height, x : x + width] for y, x in zip(oy, ox)])


def scene(rng: np.random.Generator, height: int, width: int, *, speed: tuple[float, float], beta: float,
           base_range: tuple[float, float], gain_range: tuple[float, float]) -> Scene:
    """A texture with a 1/f**beta spectrum, mean colour drawn in ``base_range``, panning at ``speed`` (px/frame at 96 px)."""
    angle = rng.uniform(0, 2 * math.pi)
    v = rng.uniform(*speed) * min(height, width) / 96
    base = rng.uniform(*base_range) + rng.uniform(-20, 20, 3)
    picture = (base + texture(rng, 2 * height, 2 * width, beta)[..., None] * rng.uniform(*gain_range, 3))
    return Scene(tiles=np.tile(picture.astype(np.float32), (2, 2, 1)), velocity=(v * math.cos(angle), v * math.sin(angle)))


def grating(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Two crossed sinusoidal gratings of two drawn colours (whole cycles across the tile, so it wraps), a
    little noise, panning slowly."""
    y, x = np.mgrid[0 : 2 * height, 0 : 2 * width].astype(np.float32)
    waves = sum(np.sin(2 * math.pi * (rng.integers(1, 5) * x / (2 * width) + rng.integers(1, 5) * y / (2 * height))
                       + rng.uniform(0, 2 * math.pi)) for _ in range(2)) / 2
    a, b = colour(rng, bool(rng.uniform() < 0.5)), rng.uniform(70, 180, 3).astype(np.float32)
    mix = (0.5 + 0.35 * waves)[..., None]
    picture = a * mix + b * (1 - mix) + 6 * texture(rng, 2 * height, 2 * width, 1.0)[..., None]
    angle, v = rng.uniform(0, 2 * math.pi), rng.uniform(0.15, 0.9) * min(height, width) / 96
    return Scene(tiles=np.tile(picture.astype(np.float32), (2, 2, 1)),
                  velocity=(v * math.cos(angle), v * math.sin(angle)))


def paint(canvas: np.ndarray, actor: Actor, track: tuple[np.ndarray, ...], stage: int, offset: tuple[float, float],
           size: float = 1.0, opacity: float = 1.0) -> None:
    """Composite ``actor`` along ``track`` (per-frame x, y, scale, angle) onto ``canvas`` (T, H, W, 3) in place.

    Every frame is drawn in a square window around the actor, all frames at once. A window that would
    leave the frame is shifted back inside it: it still covers every in-frame pixel of the actor.
    """
    x, y, scale, angle = track
    t_len, height, width, _ = canvas.shape
    r = actor.radius * stage * scale * size  # (T,) pixels
    cx, cy = offset[0] + x * stage, offset[1] + y * stage
    box = min(int(math.ceil(2 * r.max())) + 3, height, width)
    u = np.clip(np.floor(cx - box / 2).astype(np.int64), 0, width - box)[:, None] + np.arange(box)  # (T, box)
    v = np.clip(np.floor(cy - box / 2).astype(np.int64), 0, height - box)[:, None] + np.arange(box)  # (T, box)
    dx = (u[:, None, :] - cx[:, None, None]) / r[:, None, None]
    dy = (v[:, :, None] - cy[:, None, None]) / r[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    lx, ly = cos * dx + sin * dy, (cos * dy - sin * dx) / actor.aspect
    rho = np.sqrt(lx**2 + ly**2)
    if actor.sides:  # a regular polygon's boundary in polar form; the border is the outer 30 %
        sector = 2 * math.pi / actor.sides
        edge = math.cos(sector / 2) / np.cos(np.arctan2(ly, lx) % sector - sector / 2)
        mix = np.clip((0.7 * edge - rho) * r[:, None, None] + 0.5, 0, 1).astype(np.float32)[..., None]
    else:
        edge = 1 - actor.lobe_depth * (1 - np.cos(actor.lobes * np.arctan2(ly, lx))) / 2
        phase = lx * math.cos(actor.stripe_angle) + ly * math.sin(actor.stripe_angle)
        mix = np.clip(0.5 + 2 * np.sin(2 * math.pi * actor.stripes * phase), 0, 1).astype(np.float32)[..., None]
    alpha = (np.clip((edge - rho) * r[:, None, None] + 0.5, 0, 1) * opacity).astype(np.float32)[..., None]
    colour = actor.colours[0] * mix + actor.colours[1] * (1 - mix)
    index = (np.arange(t_len)[:, None, None], v[:, :, None], u[:, None, :])
    canvas[index] = canvas[index] * (1 - alpha) + colour * alpha
