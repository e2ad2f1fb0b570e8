"""Find red blood cells in a whole thin-smear field: one box and mask per cell.

Classical image processing (OpenCV + scipy.ndimage), no trained model:

1. size pass on a 320 px copy: is this a stained bright-field smear at all, how big are its
   cells (median area of lone round blobs)? Then work at a scale where a cell is
   ~`TARGET_RADIUS` px (never upsampled, at most `MAX_WORK_PIXELS`), so other resolutions work,
2. flatten illumination and turn the green channel into optical density against the local
   background (Giemsa-stained cells absorb green; the bright slide does not), which also cancels
   stain/exposure differences between sessions,
3. two thresholds: dark cells above 1.25 x Otsu; pale cells (many infected ones) above
   0.4 x Otsu away from the blurred halo of dark cells; fill central-pallor holes; open away
   thin things (scale bar line, text, fibres),
4. distance-transform peaks (plus peaks of a darker-cell mask, for darker infected cells inside
   clumps) as markers, and a depth flood from them splits touching cells; a cell in a clump gets
   the box of a circle fitted to its free edge; boxes get a margin like the annotators' boxes,
5. drop white blood cells (a big, very dark purple nucleus), platelets/debris (small or thin)
   and grey-black ink (the scale bar and its text).

Bad input never raises for content reasons: `find_cells` returns a `FieldCells` with zero boxes
and a `message` saying why (blank, greyscale, no cells, wrong scale, too many candidates,
confluent smear), and the flag `too_thick` on fields that are counted but should not be
trusted (most cells in clumps). It raises `TypeError`/`ValueError` only for things that are not
an image array at all. Callers decide what to do with flags; `FieldCells.ok` is the short test.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

NO_CELLS_MESSAGE = "no red blood cells found in this image"
TOO_MANY_MESSAGE = (
    "more than {limit:,} candidate cells found ({n:,}); this does not look like a thin-smear field "
    "at the expected magnification, so no cells were counted"
)
TOO_THICK_MESSAGE = (
    "most cells ({share:.0%}) are in clumps; the smear is too thick here to count cells reliably"
)
MAX_CANDIDATES = 3000
TARGET_RADIUS = 20.0  # cell radius (px) at which the pipeline works; ~half of a 1280x960 field's cells
FIRST_PASS_SIDES = (320, 640)  # long sides of the size-estimating pass (the 2nd only if cells are tiny)
MAX_WORK_PIXELS = 1_600_000  # never work on more pixels than this, whatever the input size
MIN_CELL_DIAMETER = 10.0  # px in the original image; smaller cells cannot be cropped meaningfully
MAX_CELL_FRACTION = 0.34  # cell diameter / short image side; larger = too zoomed-in to be a field
THICK_SHARE = 0.6  # share of cells in clumps of >= CLUMP_CELLS that flags a too-thick smear
CLUMP_CELLS = 3
CONFLUENT_SHARE = 0.75  # foreground share of the image above which cells cannot be told apart
MARKER_WIN = 0.55  # a marker is the deepest point within this x radius
MARKER_DEPTH = 0.45  # ... and at least this x radius from the background
CIRCLE_COVER = 0.3  # free edge must span this share of the circle to trust the fit
CIRCLE_RMIN, CIRCLE_RMAX = 0.6, 1.6  # x typical radius
CIRCLE_UNION = 0.0  # 1: box = union of region box and circle box
BOX_PAD = 0.1  # margin per side, x cell diameter (train fields: boxes ~0.2 d wider than cells)
LOW_FACTOR = 0.4  # x Otsu: pale-cell threshold, used away from dark cells (0 = off)
BIG_DARK = 0.5  # x cell area: dark blobs at least this big are dark cells (cast a halo)
HALF_MAX = 0.5  # in the band, keep pixels above this x the local max density (0 = off)
HALF_WIN = 0.4  # x radius, half-size of that local window
HALO = 0.15  # x radius: band around dark cells where the pale threshold is not used
WBC_FILTER = 1.0  # 0 turns the white-cell filter off (for measuring what it removes)
NEUTRAL_RATIO = 0.85  # red density / green density above this = grey-black ink, not a cell
DARK_FACTOR = 1.4  # x the cell threshold: 'darker cell' mask for extra markers (0 = off)
DARK_DEPTH = 0.35  # x radius: depth of an extra marker in the dark mask
DARK_MIN_DIST = 0.9  # x radius: no extra marker this close to an existing one
N_LEVELS = 8  # depth levels of the distance-map flood
FG_FACTOR = 1.25  # x Otsu threshold on green density; lower keeps pale cells but bridges close ones


@dataclass(frozen=True)
class FieldCells:
    """Result of `find_cells`.

    boxes: (N, 4) int (x, y, w, h) in original-image pixels.
    labels: int32 label image at working scale; cell i has label i + 1 (0 = not a cell).
    foreground: bool image at working scale: every stained object before splitting/filters.
    scale: working-scale pixels per original pixel (labels.shape ~ original shape * scale).
    cell_diameter: estimated typical red-cell diameter in original pixels (0 if unknown).
    n_candidates: foreground regions after splitting, before the size/shape/WBC filters.
    clumped_share: share of kept cells that came from a clump of >= 3 cells.
    flags: short machine-readable flags ("no_cells", "too_many", "too_thick", "bad_scale", ...).
    message: human-readable explanation when the result is empty or should not be trusted, else "".
    """

    boxes: np.ndarray
    labels: np.ndarray
    foreground: np.ndarray
    scale: float
    image_shape: tuple[int, int]
    cell_diameter: float = 0.0
    n_candidates: int = 0
    clumped_share: float = 0.0
    n_dropped_wbc: int = 0
    n_dropped_small: int = 0
    flags: tuple[str, ...] = ()
    message: str = ""

    def __len__(self) -> int:
        return int(len(self.boxes))

    @property
    def ok(self) -> bool:
        """True when cells were found and nothing says the count is unreliable."""
        return len(self) > 0 and not self.flags

    def mask(self, i: int) -> np.ndarray:
        """Boolean mask of cell i over its box (h, w), in original-image pixels."""
        x, y, w, h = (int(v) for v in self.boxes[i])
        s = self.scale
        x0, y0 = int(np.floor(x * s)), int(np.floor(y * s))
        x1 = max(x0 + 1, int(np.ceil((x + w) * s)))
        y1 = max(y0 + 1, int(np.ceil((y + h) * s)))
        sub = (self.labels[y0:y1, x0:x1] == (i + 1)).astype(np.uint8)
        return cv2.resize(sub, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


# ----------------------------------------------------------------------------- input handling


def _as_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"find_cells needs a numpy array, got {type(rgb).__name__}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"find_cells needs an H x W x 3 RGB image, got shape {rgb.shape}")
    rgb = rgb[:, :, :3]
    if rgb.dtype != np.uint8:
        if np.issubdtype(rgb.dtype, np.floating) and rgb.size and float(np.nanmax(rgb)) <= 1.0:
            rgb = rgb * 255.0
        rgb = np.clip(np.nan_to_num(rgb), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def _empty(shape: tuple[int, int], scale: float, flags: tuple[str, ...], message: str, **kw) -> FieldCells:
    h, w = max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale)))
    return FieldCells(
        boxes=np.zeros((0, 4), dtype=np.int64),
        labels=np.zeros((h, w), dtype=np.int32),
        foreground=np.zeros((h, w), dtype=bool),
        scale=scale,
        image_shape=shape,
        flags=flags,
        message=message,
        **kw,
    )


# ----------------------------------------------------------------------------- image -> density


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    if size == (w, h):
        return rgb
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interp)


def _background(channel: np.ndarray, radius: float) -> np.ndarray:
    """Smooth estimate of the empty-slide level, from pixels that are surely background.

    A max filter over ~2 cell diameters gives a first guess (biased bright by noise); the
    final level is the local mean of the pixels darker-than-cell-free by at most a small
    margin (normalised convolution), so the background reads as optical density ~0.
    """
    h, w = channel.shape
    f = max(1, int(radius // 2))  # work on a small copy: illumination varies slowly
    small = cv2.resize(channel, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    k = max(3, int(round(4 * radius / f)) | 1)
    first = cv2.blur(cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))), (k, k))
    od = np.log(np.maximum(first, 1.0) / np.maximum(small, 1.0))
    t = _otsu(od)
    sure = (od < 0.5 * t).astype(np.float32) if t > 0 else np.ones_like(small)
    num = cv2.blur(small * sure, (k, k))
    den = cv2.blur(sure, (k, k))
    bg = np.where(den > 0.02, num / np.maximum(den, 1e-6), first)
    return cv2.resize(bg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def _density(rgb: np.ndarray, radius: float, channel: int = 1) -> np.ndarray:
    """Optical density of one channel (default green), background-normalised (0 = empty slide).

    Giemsa-stained red cells absorb green most; the ratio to the local background cancels
    uneven illumination and exposure differences between sessions.
    """
    c = rgb[:, :, channel].astype(np.float32) + 1.0
    bg = _background(c, radius)
    return np.clip(np.log(np.maximum(bg, 8.0) / c), -1.0, 4.0)


def _otsu(values: np.ndarray) -> float:
    """Otsu threshold of float values in [0, hi] via a 256-bin histogram."""
    hi = float(np.percentile(values, 99.5)) if values.size else 0.0
    if hi <= 1e-6:
        return 0.0
    q = np.clip(values / hi * 255.0, 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(q, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t) / 255.0 * hi


def _disc(r: float) -> np.ndarray:
    d = max(1, int(round(2 * r)) + 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))


def _fill_holes(fg: np.ndarray, max_area: float) -> np.ndarray:
    """Fill background islands smaller than max_area (central pallor, pale parasite interiors)."""
    inv = (~fg).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    small = np.zeros(n, dtype=bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] < max_area
    return fg | small[lab]


@dataclass(frozen=True)
class _Foreground:
    od: np.ndarray  # green optical density
    fg: np.ndarray  # bool foreground after cleaning
    threshold: float
    contrast: float  # median OD of foreground / Otsu threshold
    n_raw: int  # blobs of >= 4 px straight after thresholding (before any cleaning)


def _foreground(rgb: np.ndarray, radius: float) -> _Foreground:
    """Cell pixels from two thresholds on green density, so pale cells survive next to dark ones.

    Dark cells: above FG_FACTOR x Otsu (tight edges, no bridging through the blurred halo between
    neighbours). Pale cells (many infected ones: gametocytes and schizonts are far paler than
    the normal cells of a dark-stained field): above LOW_FACTOR x Otsu, but only outside a
    HALO x radius band around the dark cells, which is where the bridging halo lives.
    """
    od_g = _density(rgb, radius)
    od_g = cv2.GaussianBlur(od_g, (0, 0), max(0.7, radius / 20))
    otsu = _otsu(od_g)
    t = max(otsu * FG_FACTOR, 0.04)
    strict = od_g > t
    n_raw, _, stats, _ = cv2.connectedComponentsWithStats(strict.astype(np.uint8), connectivity=8)
    n_raw = int((stats[1:, cv2.CC_STAT_AREA] >= 4).sum())
    fg = strict
    if LOW_FACTOR > 0:
        loose = od_g > max(otsu * LOW_FACTOR, 0.04)
        # only whole dark cells cast a halo; a dark spot inside a pale cell (pigment,
        # chromatin) must not cut the pale cell away around it
        n, lab, st, _ = cv2.connectedComponentsWithStats(strict.astype(np.uint8), connectivity=8)
        big = np.zeros(n, dtype=np.uint8)
        big[1:] = st[1:, cv2.CC_STAT_AREA] >= BIG_DARK * np.pi * radius**2
        near = cv2.dilate(big[lab], _disc(HALO * radius)).astype(bool)
        fg = strict | (loose & ~near)
        if HALF_MAX > 0:  # inside the band keep what is at least half as dark as its darkest
            k = max(3, int(round(2 * HALF_WIN * radius)) | 1)  # neighbourhood: a pale body
            local_max = cv2.dilate(od_g, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
            fg |= loose & near & (od_g > HALF_MAX * local_max)
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, _disc(radius * 0.2)).astype(bool)
    fg = _fill_holes(fg, max_area=0.6 * np.pi * radius**2)
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, _disc(radius * 0.3)).astype(bool)
    vals = od_g[fg]
    contrast = float(np.median(vals) / max(otsu, 1e-6)) if vals.size else 0.0
    return _Foreground(od=od_g, fg=fg, threshold=t, contrast=contrast, n_raw=n_raw)


# ----------------------------------------------------------------------------- size estimate


def _estimate_radius(fg: np.ndarray) -> tuple[float, int]:
    """Typical cell radius from single, convex components; also the number of components."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return 0.0, 0
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    w = stats[1:, cv2.CC_STAT_WIDTH].astype(np.float64)
    h = stats[1:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    x, y = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    H, W = fg.shape
    inner = (x > 0) & (y > 0) & (x + w < W) & (y + h < H)
    # a lone round cell fills ~pi/4 of its box and has aspect ~1
    fill = areas / np.maximum(w * h, 1)
    aspect = np.minimum(w, h) / np.maximum(w, h)
    single = inner & (fill > 0.65) & (aspect > 0.7) & (areas >= 12)
    pool = areas[single] if single.sum() >= 3 else areas[areas >= 12]
    if pool.size == 0:
        return 0.0, int(n - 1)
    # the biggest round blobs are white cells / gametocytes; the smallest, platelets
    med = float(np.median(pool))
    core = pool[(pool > 0.4 * med) & (pool < 2.0 * med)]
    area = float(np.median(core)) if core.size else med
    return float(np.sqrt(area / np.pi)), int(n - 1)


# ----------------------------------------------------------------------------- split + filter


def _peaks(mask: np.ndarray, radius: float, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance transform of `mask` and a bool map of its local peaks at least depth x r deep."""
    dt = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    dts = cv2.GaussianBlur(dt, (0, 0), max(1.0, radius * 0.1))
    win = _disc(radius * MARKER_WIN)
    peaks = (dts >= cv2.dilate(dts, win) - 1e-3) & (dts >= depth * radius)
    return dt, peaks


def _markers(fg: np.ndarray, radius: float, dark: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Distance transform and one marker per local DT peak at least ~0.45 r deep.

    `dark` (optional): a stricter mask. A cell darker than the clump it sits in (common for
    infected cells in pale fields) stands alone in it, so its peak there becomes an extra marker
    when no marker is already near.
    """
    dt, peaks = _peaks(fg, radius, MARKER_DEPTH)
    if dark is not None and dark.any():
        _, extra = _peaks(dark & fg, radius, DARK_DEPTH)
        near = cv2.dilate(peaks.astype(np.uint8), _disc(radius * DARK_MIN_DIST)).astype(bool)
        peaks |= extra & ~near
    peaks = cv2.dilate(peaks.astype(np.uint8), _disc(max(1.0, radius * 0.15)))
    n, lab = cv2.connectedComponents(peaks, connectivity=8)
    return dt, lab.astype(np.int32), n - 1


def _flood(fg: np.ndarray, dt: np.ndarray, lab: np.ndarray) -> None:
    """In-place depth flood of uint16 marker labels `lab` through `fg` (deep to shallow).

    At each level the labels grow by 3x3 dilation (cross and square alternating, so fronts
    stay roughly round) into unlabelled foreground at least that deep, so touching cells split
    along the neck between their distance peaks.
    """
    kernels = (cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), np.ones((3, 3), np.uint8))
    top = float(dt[fg].max()) if fg.any() else 0.0
    step = max(1.0, top / N_LEVELS)
    it = 0
    for level in np.arange(top - step, -step, -step):
        allowed = fg & (dt >= level)
        for _ in range(int(np.ceil(step)) * 2 + 2):
            grown = cv2.dilate(lab, kernels[it % 2])
            it += 1
            new = allowed & (lab == 0) & (grown > 0)
            if not new.any():
                break
            lab[new] = grown[new]


def _watershed(fg: np.ndarray, dt: np.ndarray, markers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the foreground into one region per marker; returns (labels 1..N, clump size per label).

    Only clumps holding two or more markers are flooded, each in its own small window, which
    keeps this ~10x cheaper than flooding the whole field. (scipy's watershed_ift gives blocky
    ties on smooth distance maps; cv2.watershed floods by colour gradient and split worse here.)
    A clump without a marker (shallow, e.g. border-cut) becomes one region.
    """
    n_comp, comp = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    lab = np.zeros(fg.shape, dtype=np.int32)
    ys, xs = np.nonzero(markers)
    m_comp = np.zeros(int(markers.max()) + 1, dtype=np.int64)
    m_comp[markers[ys, xs]] = comp[ys, xs]
    per = np.bincount(m_comp[1:], minlength=n_comp) if markers.max() else np.zeros(n_comp, np.int64)
    per[0] = 0
    # component -> label offset: single-marker and marker-less clumps take one label each
    next_label = 1
    clump_size: list[int] = [0]
    comp_label = np.zeros(n_comp, dtype=np.int32)
    multi = []
    for c in range(1, n_comp):
        if per[c] >= 2:
            multi.append(c)
        else:
            comp_label[c] = next_label
            clump_size.append(1)
            next_label += 1
    lab[:] = comp_label[comp]
    if multi:
        objs = ndi.find_objects(comp)
        for c in multi:
            sl = objs[c - 1]
            sub_fg = comp[sl] == c
            sub_m = np.where(sub_fg, markers[sl], 0)
            ids = np.unique(sub_m)
            ids = ids[ids > 0]
            remap = np.zeros(int(ids.max()) + 1, dtype=np.uint16)
            remap[ids] = np.arange(1, ids.size + 1, dtype=np.uint16)
            sub = remap[sub_m]
            _flood(sub_fg, dt[sl], sub)
            sub = sub.astype(np.int32)
            rest = sub_fg & (sub == 0)
            if rest.any():  # unreached bits: give them to a neighbour-free extra label
                sub[rest] = ids.size + 1
            k = int(sub.max())
            view = lab[sl]
            view[sub_fg] = sub[sub_fg] + next_label - 1
            clump_size += [k] * k
            next_label += k
    return lab, np.asarray(clump_size, dtype=np.int64)


def _nucleus_mask(rgb: np.ndarray, od_g: np.ndarray, fg: np.ndarray, radius: float) -> np.ndarray:
    """Very dark, blue-purple blobs at least ~0.25 of a cell: white-cell nuclei.

    Red cells and parasite chromatin dots stay out: a parasite dot is a few % of a cell, and a
    red cell's density is close to the field's typical cell density.
    """
    vals = od_g[fg]
    if vals.size == 0:
        return np.zeros_like(fg)
    ref = float(np.percentile(vals, 60))
    r = rgb[:, :, 0].astype(np.float32)
    b = rgb[:, :, 2].astype(np.float32)
    dark = (od_g > max(1.6 * ref, ref + 0.35)) & (b > r * 0.9)
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, _disc(radius * 0.12))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    big = np.zeros(n, dtype=bool)
    big[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.25 * np.pi * radius**2
    return big[lab]


def _fit_circle(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares (Kasa) circle through edge points: (cx, cy, r, share of 24 angle bins hit)."""
    if xs.size < 10:
        return 0.0, 0.0, 0.0, 0.0
    A = np.stack([xs, ys, np.ones_like(xs)], axis=1)
    rhs = -(xs**2 + ys**2)
    try:
        (a, b, c), *_ = np.linalg.lstsq(A, rhs, rcond=None)
    except np.linalg.LinAlgError:
        return 0.0, 0.0, 0.0, 0.0
    cx, cy = -a / 2, -b / 2
    r2 = cx * cx + cy * cy - c
    if r2 <= 0:
        return 0.0, 0.0, 0.0, 0.0
    ang = np.arctan2(ys - cy, xs - cx)
    bins = np.unique(((ang + np.pi) / (2 * np.pi) * 24).astype(np.int64) % 24)
    return float(cx), float(cy), float(np.sqrt(r2)), bins.size / 24.0


def _cell_box(
    lab: np.ndarray, outer: np.ndarray, i: int, sl: tuple[slice, slice], radius: float
) -> tuple[tuple[int, int, int, int], tuple[float, float, float]]:
    """Box of region i; for a cell in a clump, the box of the circle fitted to its free edge.

    Watershed gives a touching cell only its visible, non-shared part; the annotators (and a
    cell crop) want the whole disc, which the arc of its free outline predicts well.
    """
    H, W = lab.shape
    y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
    py0, py1, px0, px1 = max(0, y0 - 1), min(H, y1 + 1), max(0, x0 - 1), min(W, x1 + 1)
    sub = lab[py0:py1, px0:px1]
    reg = sub == i
    box = (x0, y0, x1 - x0, y1 - y0)
    ring = cv2.dilate(reg.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~reg
    shared = bool(((sub > 0) & ring).any())
    if not shared:
        return box, (0.0, 0.0, 0.0)
    ys, xs = np.nonzero(reg & outer[py0:py1, px0:px1])
    cx, cy, r, cover = _fit_circle(xs.astype(np.float64) + px0, ys.astype(np.float64) + py0)
    ok = (cover >= CIRCLE_COVER and CIRCLE_RMIN * radius <= r <= CIRCLE_RMAX * radius
          and x0 - r <= cx <= x1 + r and y0 - r <= cy <= y1 + r)
    if not ok:
        return box, (0.0, 0.0, 0.0)
    cx0, cy0 = max(0, int(np.floor(cx - r))), max(0, int(np.floor(cy - r)))
    cx1, cy1 = min(W, int(np.ceil(cx + r))), min(H, int(np.ceil(cy + r)))
    if CIRCLE_UNION:
        cx0, cy0, cx1, cy1 = min(cx0, x0), min(cy0, y0), max(cx1, x1), max(cy1, y1)
    return (cx0, cy0, cx1 - cx0, cy1 - cy0), (cx, cy, r)


def _regions(
    rgb: np.ndarray, fgd: _Foreground, radius: float
) -> tuple[np.ndarray, list[tuple[int, int, int, int]], dict]:
    fg = fgd.fg
    dark = None
    if DARK_FACTOR > 0:
        dark = fgd.od > fgd.threshold * DARK_FACTOR
        dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, _disc(radius * 0.3)).astype(bool)
    dt, markers, n_markers = _markers(fg, radius, dark)
    lab, clump_size = _watershed(fg, dt, markers)
    n = int(lab.max())
    area_cell = np.pi * radius**2
    H, W = fg.shape
    nucleus = _nucleus_mask(rgb, fgd.od, fg, radius)
    objs = ndi.find_objects(lab)
    outer = (lab > 0) & (cv2.dilate((lab == 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    # ink (scale bar, its text, pen marks) is neutral grey-black: it absorbs red as much as
    # green, while stained cells absorb green far more (pink, purple)
    od_r = _density(rgb, radius, channel=0)
    flat = lab.ravel()
    cnt = np.maximum(np.bincount(flat, minlength=n + 1), 1)
    mean_g = np.bincount(flat, weights=fgd.od.ravel(), minlength=n + 1) / cnt
    mean_r = np.bincount(flat, weights=od_r.ravel(), minlength=n + 1) / cnt
    neutral = mean_r > NEUTRAL_RATIO * np.maximum(mean_g, 1e-3)
    keep_boxes: list[tuple[int, int, int, int]] = []
    keep_ids: list[int] = []
    clumped = 0
    dropped_small = dropped_wbc = 0
    # WBC: a nucleus blob plus whatever cytoplasm regions touch it
    wbc_ids = set()
    if WBC_FILTER and nucleus.any():
        ids = np.unique(lab[nucleus])
        for i in ids[ids > 0]:
            sl = objs[i - 1]
            reg = lab[sl] == i
            share = float(nucleus[sl][reg].mean())
            if share > 0.15:
                wbc_ids.add(int(i))
    for i in range(1, n + 1):
        sl = objs[i - 1]
        if sl is None:
            continue
        reg = lab[sl] == i
        area = float(reg.sum())
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        border = x0 == 0 or y0 == 0 or x1 == W or y1 == H
        if area < (0.12 if border else 0.3) * area_cell:
            dropped_small += 1
            continue
        if neutral[i]:
            dropped_small += 1
            continue
        if i in wbc_ids:
            dropped_wbc += 1
            continue
        bw, bh = x1 - x0, y1 - y0
        if not border and area / (bw * bh) < 0.35:  # thin debris, fibres, stain streaks
            dropped_small += 1
            continue
        box, _ = _cell_box(lab, outer, i, sl, radius)
        keep_ids.append(i)
        keep_boxes.append(box)
        if clump_size[i] >= CLUMP_CELLS:
            clumped += 1
    remap = np.zeros(n + 1, dtype=np.int32)
    for k, i in enumerate(keep_ids):
        remap[i] = k + 1
    info = {
        "n_candidates": n,
        "n_markers": n_markers,
        "clumped": clumped,
        "dropped_small": dropped_small,
        "dropped_wbc": dropped_wbc,
    }
    return remap[lab], keep_boxes, info


# ----------------------------------------------------------------------------- public API


def _looks_like_smear(rgb_small: np.ndarray) -> str:
    """'' if the picture can be a bright-field stained smear, else the reason it cannot."""
    if rgb_small.size == 0:
        return "empty image"
    f = rgb_small[::3, ::3].astype(np.int16)  # a sample is enough and keeps this cheap
    if float(f.std()) < 2.0:
        return "the image is blank (one flat colour)"
    chroma = (f.max(axis=2) - f.min(axis=2)).astype(np.float32)
    if float(np.percentile(chroma, 95)) < 8.0:
        return "the image has no colour (greyscale, e.g. an X-ray); a stained smear is needed"
    grey = f.mean(axis=2)
    if float(np.percentile(grey, 75)) < 90:
        return "the image is too dark to be a bright-field smear"
    return ""


def find_cells(rgb: np.ndarray) -> FieldCells:
    """Boxes and masks of the red blood cells in an RGB field image (H x W x 3, uint8).

    Never raises for image content: an empty result carries `message` and `flags`. Raises
    TypeError/ValueError only when `rgb` is not an image array.
    """
    rgb = _as_rgb_uint8(rgb)
    H, W = rgb.shape[:2]
    shape = (H, W)
    if min(H, W) < 32:
        return _empty(shape, 1.0, ("no_cells", "too_small_image"), f"{NO_CELLS_MESSAGE} (image is only {W}x{H} px)")
    # pass 1, on a small copy: is this a smear, and how big are its cells? A 320 px copy is
    # enough for normal fields; tiny cells need the 640 px copy to be seen (and counted) at all.
    for side in FIRST_PASS_SIDES:
        s0 = min(1.0, side / max(H, W))
        small = _resize(rgb, s0)
        if side == FIRST_PASS_SIDES[0]:
            why = _looks_like_smear(small)
            if why:
                return _empty(shape, s0, ("no_cells",), f"{NO_CELLS_MESSAGE}: {why}")
        r_guess = TARGET_RADIUS * min(small.shape[:2]) / 480.0
        fgd = _foreground(small, r_guess)
        r0, n_comp = _estimate_radius(fgd.fg)
        n_comp = max(n_comp, fgd.n_raw)
        if n_comp > MAX_CANDIDATES:
            return _empty(shape, s0, ("too_many",), TOO_MANY_MESSAGE.format(limit=MAX_CANDIDATES, n=n_comp),
                          n_candidates=n_comp)
        if r0 >= 4 or s0 >= 1.0:
            break
    share_fg = float(fgd.fg.mean())
    if share_fg > CONFLUENT_SHARE:
        return _empty(shape, s0, ("too_thick", "no_cells"),
                      f"stained cells cover {share_fg:.0%} of the image with no gaps between them; the "
                      "smear is too thick here to count cells reliably (use a thinner part of the smear)")
    if r0 <= 0 or fgd.contrast < 1.3:
        return _empty(shape, s0, ("no_cells",), f"{NO_CELLS_MESSAGE}: nothing stands out from the background")
    diameter = 2 * r0 / s0
    if diameter < MIN_CELL_DIAMETER:
        return _empty(shape, s0, ("bad_scale", "no_cells"),
                      f"{NO_CELLS_MESSAGE}: objects are only ~{diameter:.0f} px across; red cells must be "
                      f"at least {MIN_CELL_DIAMETER:.0f} px (use a higher magnification or resolution)",
                      cell_diameter=diameter)
    if diameter > MAX_CELL_FRACTION * min(H, W):
        return _empty(shape, s0, ("bad_scale", "no_cells"),
                      f"{NO_CELLS_MESSAGE}: objects are ~{diameter:.0f} px across, over a third of the image; "
                      "this looks like a close-up, not a smear field", cell_diameter=diameter)

    scale = s0 * TARGET_RADIUS / r0
    scale = min(scale, 1.0, np.sqrt(MAX_WORK_PIXELS / (H * W)))  # never upsample: bounded time
    work = _resize(rgb, scale)
    radius = r0 * scale / s0
    fgd = _foreground(work, radius)
    r1, _ = _estimate_radius(fgd.fg)
    radius = r1 if r1 > 0 and abs(r1 / radius - 1) < 0.3 else radius
    if fgd.n_raw > MAX_CANDIDATES:  # bounded time: never split thousands of blobs one by one
        return _empty(shape, scale, ("too_many",),
                      TOO_MANY_MESSAGE.format(limit=MAX_CANDIDATES, n=fgd.n_raw),
                      n_candidates=fgd.n_raw, cell_diameter=2 * radius / scale)
    labels, boxes, info = _regions(work, fgd, radius)
    n_cand = info["n_candidates"]
    if n_cand > MAX_CANDIDATES:
        return _empty(shape, scale, ("too_many",), TOO_MANY_MESSAGE.format(limit=MAX_CANDIDATES, n=n_cand),
                      n_candidates=n_cand, cell_diameter=2 * radius / scale)
    if not boxes:
        return _empty(shape, scale, ("no_cells",), NO_CELLS_MESSAGE, n_candidates=n_cand,
                      cell_diameter=2 * radius / scale)
    b = np.asarray(boxes, dtype=np.float64)
    pad = BOX_PAD * 2 * radius / scale  # boxes carry a margin, like the annotators' boxes
    x0 = np.maximum(np.floor(b[:, 0] / scale - pad), 0)
    y0 = np.maximum(np.floor(b[:, 1] / scale - pad), 0)
    x1 = np.minimum(np.ceil((b[:, 0] + b[:, 2]) / scale + pad), W)
    y1 = np.minimum(np.ceil((b[:, 1] + b[:, 3]) / scale + pad), H)
    out = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).astype(np.int64)
    share = info["clumped"] / len(boxes)
    flags: tuple[str, ...] = ()
    message = ""
    if share > THICK_SHARE:
        flags = ("too_thick",)
        message = TOO_THICK_MESSAGE.format(share=share)
    return FieldCells(
        boxes=out,
        labels=labels,
        foreground=fgd.fg,
        scale=float(scale),
        image_shape=shape,
        cell_diameter=float(2 * radius / scale),
        n_candidates=n_cand,
        clumped_share=float(share),
        n_dropped_wbc=info["dropped_wbc"],
        n_dropped_small=info["dropped_small"],
        flags=flags,
        message=message,
    )
