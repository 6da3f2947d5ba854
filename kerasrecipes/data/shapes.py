"""The demo's shapes as signed distance functions of the unit frame (negative inside), drawn
by the class-folder demo (`kerasrecipes.data.demo`) and the scenes (`kerasrecipes.data.scenes`)."""

import functools

import numpy as np


def _polygon(x, y, sides, apothem=0.8):
    sector = 2 * np.pi / sides
    angle = np.mod(np.arctan2(y, x), sector) - sector / 2
    return np.hypot(x, y) * np.cos(angle) - apothem


def _box(x, y, half_width, half_height):
    return np.maximum(np.abs(x) - half_width, np.abs(y) - half_height)


SHAPES = {
    "disk": lambda x, y: np.hypot(x, y) - 0.9,
    "ring": lambda x, y: np.abs(np.hypot(x, y) - 0.7) - 0.22,
    "square": lambda x, y: _box(x, y, 0.75, 0.75),
    "frame": lambda x, y: np.abs(_box(x, y, 0.65, 0.65)) - 0.18,
    "triangle": lambda x, y: _polygon(x, y, 3, 0.5),
    "hexagon": lambda x, y: _polygon(x, y, 6),
    "star": lambda x, y: np.hypot(x, y) - (0.62 + 0.33 * np.cos(5 * np.arctan2(y, x))),
    "cross": lambda x, y: np.minimum(_box(x, y, 0.95, 0.28), _box(x, y, 0.28, 0.95)),
    "bar": lambda x, y: _box(x, y, 1.0, 0.3),
    "crescent": lambda x, y: np.maximum(np.hypot(x, y) - 0.9, 0.75 - np.hypot(x - 0.45, y)),
    "ellipse": lambda x, y: np.hypot(x, y / 0.55) - 0.95,
    "pentagon": lambda x, y: _polygon(x, y, 5),
}


@functools.lru_cache(maxsize=None)
def shape_area(shape):
    """The shape's area in its unit frame, measured on a fine grid."""
    coords = np.linspace(-1.5, 1.5, 600)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    return float((SHAPES[shape](xx, yy) <= 0).mean() * 9.0)
