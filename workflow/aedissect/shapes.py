"""``shapes``: images rendered from known factors the way dSprites is (Matthey et al. 2017).

The factor grid has dSprites' values: shape (square, ellipse, heart) × scale (6 values from 0.5 to 1) ×
orientation (40 values over [0, 2π); dSprites' ``linspace(0, 2π, 40)`` repeats 0 as 2π) × x and y position
(32 values from 0 to 1 each), 737,280 combinations. Each image is the shape's indicator function sampled at
the pixel centres (binary), or averaged over 4 × 4 samples per pixel (``antialias``), so pixel values lie in
[0, 1] either way. Rendering is vectorised over pixels and over a chunk of images at once.

Geometry, in units of the image side: a shape at scale s has half-size 0.15·s (the square's half side, the
ellipse's long semi-axis; the ellipse is 2:1), is rotated by θ counter-clockwise as displayed, and has its
centre at 0.22 + 0.56·position from the left (x) and from the top (y), so that the largest shape in any
orientation stays inside the image. x moves a shape along the columns, y along the rows.

Stored beside the images: the shape as the label (``y_*``), and as factors (``factors_*``, columns in
``datasets.SHAPES_FACTORS``) the scale, the orientation as sin and cos of m·θ, and x and y. m is the shape's
rotational symmetry (square 4, ellipse 2, heart 1): a quarter turn leaves a square's image unchanged, so
only m·θ (mod 2π) is a function of the image, and a probe of θ itself could not reach R² = 1 on squares
whatever the representation holds.
"""

from __future__ import annotations

import numpy as np

from aedissect.datasets import DataError

SHAPE_NAMES = ("square", "ellipse", "heart")
SYMMETRY = np.array([4, 2, 1])
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.arange(40) * (2 * np.pi / 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
GRID = (len(SHAPE_NAMES), len(SCALES), len(ORIENTATIONS), len(POSITIONS), len(POSITIONS))
HALF_SIZE = 0.15
# no shape reaches further from its centre than its square's corner; MARGIN keeps that inside the image
REACH = HALF_SIZE * np.sqrt(2)
MARGIN = 0.22
SUPERSAMPLE = 4
# sample points evaluated at once (images × points per image): bounds the memory of a chunk to ~100 MB
CHUNK_POINTS = 2**21


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 1.0


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u**2 + (2.0 * v) ** 2 <= 1.0


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # the curve (X² + Y² − 1)³ = X² Y³ spans X in ±1.14, Y in [−1, 1.24]: scaled and shifted into the unit square
    X, Y = 1.15 * u, 1.15 * v + 0.12
    X2, Y2 = X * X, Y * Y
    t = X2 + Y2 - 1.0
    return t * t * t <= X2 * Y2 * Y  # products, not powers: np.power is several times slower


INSIDE = (_square, _ellipse, _heart)


def render(
    shape: np.ndarray,
    scale: np.ndarray,
    orientation: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    size: int,
    antialias: bool = False,
) -> np.ndarray:
    """Images (n, size·size) float32 in [0, 1], row-major, one per entry of the factor arrays.

    ``shape`` holds indices into SHAPE_NAMES, the others factor values (orientation in radians, positions
    in [0, 1]). Only a window of REACH around each shape's centre is evaluated (a fifth of a 32 × 32 image).
    """
    sub = SUPERSAMPLE if antialias else 1
    window = min(size, int(np.ceil(2 * REACH * size)) + 2)
    offsets = np.arange(window)
    # sample points of a window, in pixels from its corner (the pixel centres, or a 4 × 4 grid in each pixel)
    points = ((np.arange(window * sub) + 0.5) / sub).astype(np.float32)
    out = np.zeros((len(shape), size, size), dtype=np.float32)
    chunk = max(1, CHUNK_POINTS // (window * sub) ** 2)
    for k, inside in enumerate(INSIDE):
        members = np.flatnonzero(shape == k)
        for begin in range(0, len(members), chunk):
            part = members[begin : begin + chunk]
            # centres and radii in pixels; the window's corner keeps it inside the image
            cx = ((MARGIN + (1 - 2 * MARGIN) * x[part]) * size).astype(np.float32)
            cy = ((MARGIN + (1 - 2 * MARGIN) * y[part]) * size).astype(np.float32)
            col0 = np.clip(np.floor(cx).astype(int) - window // 2, 0, size - window)
            row0 = np.clip(np.floor(cy).astype(int) - window // 2, 0, size - window)
            radius = (HALF_SIZE * scale[part] * size).astype(np.float32)[:, None, None]
            cos = np.cos(orientation[part]).astype(np.float32)[:, None, None]
            sin = np.sin(orientation[part]).astype(np.float32)[:, None, None]
            dx = (col0 - cx).astype(np.float32)[:, None, None] + points[None, None, :]
            dy = (cy - row0).astype(np.float32)[:, None, None] - points[None, :, None]  # up: θ turns counter-clockwise
            u = (cos * dx + sin * dy) / radius
            v = (cos * dy - sin * dx) / radius
            covered = inside(u, v)
            if sub > 1:
                covered = covered.reshape(len(part), window, sub, window, sub).mean(axis=(2, 4))
            rows = row0[:, None, None] + offsets[None, :, None]
            cols = col0[:, None, None] + offsets[None, None, :]
            out[part[:, None, None], rows, cols] = covered
    return out.reshape(len(shape), size * size)


def factor_values(index: np.ndarray) -> dict[str, np.ndarray]:
    """The factor values of flat indices into GRID."""
    shape, scale, orientation, x, y = np.unravel_index(index, GRID)
    return {
        "shape": shape,
        "scale": SCALES[scale],
        "orientation": ORIENTATIONS[orientation],
        "x": POSITIONS[x],
        "y": POSITIONS[y],
    }


def load(options: dict) -> dict:
    """The shapes data set: a seeded sample of ``data.shapes.n_samples`` grid points (null: the whole grid),
    rendered, split by ``data.test_fraction`` with ``data.split_seed``."""
    spec = options["shapes"]
    n_grid = int(np.prod(GRID))
    if spec["n_samples"] is None:
        index = np.arange(n_grid)
    else:
        index = np.random.default_rng(spec["seed"]).choice(n_grid, size=spec["n_samples"], replace=False)
    n_test = int(round(len(index) * options["test_fraction"]))
    if not 0 < n_test < len(index):
        raise DataError(
            f"data set 'shapes': data.test_fraction = {options['test_fraction']} of "
            f"data.shapes.n_samples = {len(index)} images leaves an empty train or test split"
        )
    index = index[np.random.default_rng(options["split_seed"]).permutation(len(index))]
    f = factor_values(index)
    images = render(f["shape"], f["scale"], f["orientation"], f["x"], f["y"], spec["size"], spec["antialias"])
    turn = SYMMETRY[f["shape"]] * f["orientation"]
    factors = np.stack([f["scale"], np.sin(turn), np.cos(turn), f["x"], f["y"]], axis=1).astype(np.float32)
    labels = f["shape"].astype(np.int64)
    return {
        "x_train": images[n_test:],
        "x_test": images[:n_test],
        "y_train": labels[n_test:],
        "y_test": labels[:n_test],
        "factors_train": factors[n_test:],
        "factors_test": factors[:n_test],
    }
