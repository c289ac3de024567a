"""patchcore - PatchCore anomaly detection from Python, over the C library libpatchcore (ctypes).

    import patchcore
    model = patchcore.Model.fit(["good/000.png", "good/001.png"], weights="resnet18.pth")
    model.calibrate(["held_out/000.png", "held_out/001.png"])   # thresholds from good images
    model.save("bottle.pcm")
    r = patchcore.Model.load("bottle.pcm").predict("test.png")
    r.score, r.map, r.anomalous, r.normalized, r.regions

Images are file paths (str, bytes or os.PathLike), numpy uint8 arrays (H x W x 3 RGB; H x W grey and
H x W x 4 RGBA are converted as PIL's convert("RGB") does) or PIL images. Maps are numpy float32.
Failures of the library raise PatchcoreError (status name + the library's message, which names the
file). No compiler is needed: the library is found at import (docs/python.md, "Library lookup").
"""
import ctypes
import math
import operator
import os
import warnings
from collections import namedtuple
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from . import _lib
from ._lib import lib as _c

__version__ = "%d.%d.%d" % _lib.HEADER_VERSION
__all__ = ["Model", "Result", "ModelInfo", "CalibrationResult", "ImageError", "PatchcoreError",
           "PatchcoreWarning", "set_num_threads", "get_num_threads", "set_num_threads_local",
           "default_num_threads", "library_path", "library_version",
           "load_image"]

_NAN = float("nan")


class PatchcoreError(Exception):
    """A libpatchcore call failed. status: the pc_status value; status_name: its C name
    ("PC_ERR_IO"); message: pc_last_error() (names the file and what is wrong); image_errors: for a
    fit where no image was usable, the (path, message) of each."""

    def __init__(self, status, message, image_errors=None):
        self.status = int(status)
        names = _lib.STATUS_NAMES
        self.status_name = names[self.status] if 0 <= self.status < len(names) else "PC_ERR_%d" % self.status
        self.message = message
        self.image_errors = list(image_errors or [])
        super().__init__("%s: %s" % (self.status_name, message))


class PatchcoreWarning(UserWarning):
    """Some training images could not be used (Model.fit went on without them)."""


# One unusable input of a fit: its path (or "image #i" for arrays) and the library's message.
ImageError = namedtuple("ImageError", ["path", "message"])


def _error(status, image_errors=None):
    msg = _c.pc_last_error().decode("utf-8", "replace")
    if not msg:
        msg = _c.pc_status_str(status).decode()
    return PatchcoreError(status, msg, image_errors)


def _check(status):
    if status != 0:
        raise _error(status)


def _opt(x):
    """NaN -> None."""
    return None if math.isnan(x) else x


def set_num_threads(n):
    """Threads of the library's one pool (OpenMP, shared with OpenBLAS); n <= 0 means
    default_num_threads(). Call it before starting work."""
    _c.pc_set_num_threads(_i32("n", n))


def get_num_threads():
    """The thread count of library calls made from the calling thread."""
    return int(_c.pc_get_num_threads())


def set_num_threads_local(n):
    """The thread count of library calls made from the calling thread only (n <= 0 clears it). For
    predicting from J Python threads at once (the library releases the GIL): give each
    get_num_threads() // J so that the threads in all stay within the process-wide count."""
    _c.pc_set_num_threads_local(_i32("n", n))


def default_num_threads():
    """The CPUs this process may use: OMP_NUM_THREADS when set, else the affinity mask capped by the
    cgroup CPU quota (docs/threads.md)."""
    return int(_c.pc_default_num_threads())


def library_path():
    """The file or name the shared library was loaded from."""
    return _lib.path


def library_version():
    """The loaded library's version string ("0.2.0")."""
    return _c.pc_version().decode()


def _i32(name, v, lo=-(2 ** 31), hi=2 ** 31 - 1):
    v = operator.index(v)
    if not lo <= v <= hi:
        raise ValueError("patchcore: %s = %d is out of range [%d, %d]" % (name, v, lo, hi))
    return v


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

def _is_path(x):
    return isinstance(x, (str, bytes, os.PathLike))


def as_rgb(image):
    """An image as a C-contiguous H x W x 3 uint8 array (no copy when it already is one)."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        image = image.convert("RGB")
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError("patchcore: an image array must be uint8 (H x W x 3 RGB or H x W grey), not %s" % a.dtype)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:  # grey, replicated as PIL's convert("RGB") does
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:  # RGBA: alpha dropped without compositing, like PIL
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError("patchcore: an image array must be H x W x 3 (RGB) or H x W (grey), not %s" % (a.shape,))
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError("patchcore: empty image %s" % (a.shape,))
    _i32("image height", a.shape[0]), _i32("image width", a.shape[1])
    return np.ascontiguousarray(a)


def _image_struct(a):
    """A pc_image viewing a (from as_rgb); a must stay alive while the struct is used."""
    return _lib.Image(a.shape[1], a.shape[0], 3, a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))


def load_image(path):
    """Decode a PNG or JPEG file with the library's decoder (identical to PIL's open + convert("RGB")):
    an H x W x 3 uint8 array."""
    img = _lib.Image()
    _check(_c.pc_image_load(_lib.fsencode(path), ctypes.byref(img)))
    try:
        n = img.width * img.height * 3
        return np.ctypeslib.as_array(img.data, shape=(n,)).copy().reshape(img.height, img.width, 3)
    finally:
        _c.pc_image_free(ctypes.byref(img))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass
class Result:
    """One prediction.

    score       the image anomaly score (float32 value as a Python float)
    map         the float32 anomaly map, shape (map_height, map_width) as in geometry: crop x crop,
                or the image's height x width for a tiled model (docs/tiles.md)
    anomalous   score > the model's image threshold; None when the model is not calibrated
    normalized  the normalised score in (0, 1), 0.5 at the threshold; None when not calibrated
    regions     when a pixel threshold is calibrated (or given to predict): every anomalous region,
                by decreasing peak, each {"box": [x0, y0, x1, y1], "area": n, "peak": v} with the
                box half-open in ORIGINAL image pixels (as `patchcore predict --json` reports it),
                area in map pixels, peak the largest map value in it; None otherwise
    geometry    how the map relates to the original image (pc_geometry as a dict)
    """
    score: float
    map: np.ndarray = field(repr=False)
    anomalous: Optional[bool]
    normalized: Optional[float]
    regions: Optional[List[dict]]
    geometry: dict = field(repr=False)

    @property
    def decision(self):
        """"anomalous", "ok", or None when uncalibrated (the CLI's decision column)."""
        return None if self.anomalous is None else ("anomalous" if self.anomalous else "ok")


@dataclass(frozen=True)
class ModelInfo:
    """What a model was built with (pc_model_info); thresholds are None when not calibrated."""
    arch: str
    layers: Tuple[int, ...]
    resize: int
    crop: int
    patch: int
    pre_dim: int
    dim: int
    k: int
    grid: Tuple[int, int]
    sampler: str
    coreset_ratio: float
    bank_size: int
    n_patches_total: int
    n_train_images: int
    seed: int
    reweight_b: int
    image_threshold: Optional[float]
    pixel_threshold: Optional[float]
    score_scale: Optional[float]
    pixel_scale: Optional[float]  # the overlay colour scale's step (docs/visualisation.md)
    bn_stats: str  # "reference" (the reference's batch-norm warm-up) or "trained" (METHOD.md §2)
    precision: str = "f32"  # the backbone's arithmetic: "f32" or "bf16" (docs/precision.md)
    n_members: int = 1  # an ensemble's members (docs/ensemble.md); the fields above are then member 1's
    coverage_radius: Optional[float] = None  # every training patch lies this close to the bank (docs/update.md)
    thresholds_stale: bool = False  # the bank changed after calibration (update, merge): calibrate again
    # tiling (docs/tiles.md): None, or a dict tile, overlap, scale, stitch ("mean" or "max")
    tiling: Optional[dict] = None
    roi: Optional[Tuple[int, int]] = None  # (width, height) of the region of interest (docs/roi.md), None: none


@dataclass(frozen=True)
class CalibrationResult:
    """What Model.calibrate found (pc_calibration)."""
    image_threshold: float
    pixel_threshold: float
    score_scale: float
    n_good: int
    n_defective: int
    pixel_scale: float


@dataclass(frozen=True)
class UpdateReport:
    """What Model.update or Model.merge did (pc_update_report); radii are None when unknown."""
    rule: str
    n_images: int
    n_patches: int
    n_added: int
    bank_size: int
    radius_before: Optional[float]
    radius_new: Optional[float]
    radius_after: Optional[float]


def _update_report(r):
    rules = {v: k for k, v in _lib.UPDATE_RULES.items()}
    return UpdateReport(rules.get(r.rule, str(r.rule)), r.n_images, r.n_patches, r.n_added, r.bank_size,
                        _opt(r.radius_before), _opt(r.radius_new), _opt(r.radius_after))


def _geometry_dict(g):
    return {name: getattr(g, name) for name, _ in _lib.Geometry._fields_}


# ---------------------------------------------------------------------------------------------
# Callbacks: exceptions raised inside them (including KeyboardInterrupt, which Python delivers at
# the next bytecode of the main thread, i.e. in the progress callback) cancel the C call and are
# raised again once it has returned.
# ---------------------------------------------------------------------------------------------

class _Callbacks:
    def __init__(self, progress=None):
        if progress is not None and not callable(progress):
            raise TypeError("patchcore: progress must be callable(stage, done, total)")
        self.user_progress = progress
        self.exc = None
        self.image_errors = []
        self.progress = _lib.PROGRESS_FN(self._progress)
        self.on_image_error = _lib.IMAGE_ERROR_FN(self._image_error)

    def _progress(self, user, stage, done, total):
        try:
            if self.user_progress is not None and self.user_progress(stage.decode(), int(done), int(total)):
                return 1
            return 0
        except BaseException as e:  # noqa: B902 - handed back to the caller after the C call
            self.exc = e
            return 1

    def _image_error(self, user, path, status, message):
        try:
            self.image_errors.append(ImageError(_lib.fsdecode(path), message.decode("utf-8", "replace")))
        except BaseException as e:  # noqa: B902
            self.exc = e

    def finish(self, status):
        """Raise what the callbacks caught, then the C status."""
        if self.exc is not None:
            raise self.exc
        if status != 0:
            raise _error(status, self.image_errors)


# ---------------------------------------------------------------------------------------------
# Fit options (pc_fit_options; the defaults are pc_fit_options_init's, i.e. the reference's)
# ---------------------------------------------------------------------------------------------

_INT_OPTIONS = ("resize", "crop", "patch", "pre_dim", "dim", "k", "projection_dim", "n_starts", "batch_size",
                "reweight_b", "jobs")
_OPTIONS = set(_INT_OPTIONS) | {"weights", "arch", "layers", "sampler", "coreset_ratio", "coreset_size", "seed",
                                "coreset_projection", "coreset_starts", "progress", "max_memory", "bn_stats",
                                "precision", "tile", "tile_overlap", "tile_scale", "stitch", "roi"}


def _layer_numbers(layers):
    if isinstance(layers, str):
        layers = [s for s in layers.split(",") if s.strip()]
    out = []
    for v in layers:
        if isinstance(v, str):
            s = v.strip()
            if s.startswith("features."):
                s = s[len("features."):]
            for prefix in ("layer", "denseblock", ""):
                if s.startswith(prefix) and s[len(prefix):].isdigit():
                    v = int(s[len(prefix):])
                    break
            else:
                raise ValueError("patchcore: layer %r is not layer1..layer4 or denseblock1..denseblock4" % v)
        out.append(operator.index(v))
    if not 1 <= len(out) <= _lib.PC_MAX_LAYERS:
        raise ValueError("patchcore: between 1 and %d layers, not %d" % (_lib.PC_MAX_LAYERS, len(out)))
    return out


def _tiling_overrides(t, tile_overlap, tile_scale, stitch):
    """Set the given fields of a pc_tiling (None: leave)."""
    if tile_overlap is not None:
        t.overlap = float(tile_overlap)
    if tile_scale is not None:
        t.scale = float(tile_scale)
    if stitch is not None:
        if stitch not in _lib.STITCH:
            raise ValueError("patchcore: stitch %r is not one of %s" % (stitch, ", ".join(_lib.STITCH)))
        t.stitch = _lib.STITCH[stitch]


def _fit_options(options, keep):
    """A pc_fit_options from keyword options; arrays it points into are appended to keep."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError("patchcore: unknown fit option(s) %s; known: %s"
                        % (", ".join(sorted(unknown)), ", ".join(sorted(_OPTIONS))))
    o = _lib.FitOptions()
    _c.pc_fit_options_init(ctypes.byref(o))
    if options.get("weights") is not None:
        w = _lib.fsencode(options["weights"])
        keep.append(w)
        o.weights = w
    if options.get("arch") is not None:
        arch = _c.pc_arch_from_name(str(options["arch"]).encode())
        if arch == 0:
            raise ValueError("patchcore: unknown architecture %r" % options["arch"])
        o.arch = arch
    if options.get("layers") is not None:
        ls = _layer_numbers(options["layers"])
        for i, v in enumerate(ls):
            o.layers[i] = _i32("layer", v)
        o.n_layers = len(ls)
    for name in _INT_OPTIONS:
        if options.get(name) is not None:
            setattr(o, name, _i32(name, options[name]))
    if options.get("sampler") is not None:
        if options["sampler"] not in _lib.SAMPLERS:
            raise ValueError("patchcore: sampler %r is not one of %s" % (options["sampler"], ", ".join(_lib.SAMPLERS)))
        o.sampler = _lib.SAMPLERS[options["sampler"]]
    if options.get("coreset_ratio") is not None:
        o.coreset_ratio = float(options["coreset_ratio"])
    if options.get("coreset_size") is not None:
        v = operator.index(options["coreset_size"])
        if not 0 <= v < 2 ** 63:
            raise ValueError("patchcore: coreset_size = %d is out of range" % v)
        o.coreset_size = v
    if options.get("seed") is not None:
        v = operator.index(options["seed"])
        if not 0 <= v < 2 ** 64:
            raise ValueError("patchcore: seed = %d is out of range [0, 2^64)" % v)
        o.seed = v
    if options.get("bn_stats") is not None:
        if options["bn_stats"] not in _lib.BN_STATS:
            raise ValueError("patchcore: bn_stats %r is not one of %s" % (options["bn_stats"], ", ".join(_lib.BN_STATS)))
        o.bn_stats = _lib.BN_STATS[options["bn_stats"]]
    if options.get("precision") is not None:
        if options["precision"] not in _lib.PRECISIONS:
            raise ValueError("patchcore: precision %r is not one of %s"
                             % (options["precision"], ", ".join(_lib.PRECISIONS)))
        o.precision = _lib.PRECISIONS[options["precision"]]
    if options.get("tile"):  # tiling (docs/tiles.md): tile 0 / None is off
        o.tiling.tile = _i32("tile", options["tile"])
    _tiling_overrides(o.tiling, options.get("tile_overlap"), options.get("tile_scale"), options.get("stitch"))
    if options.get("max_memory") is not None:  # bytes; 0 = unlimited (docs/robustness.md, "Bounded memory")
        v = operator.index(options["max_memory"])
        if not 0 <= v < 2 ** 63:
            raise ValueError("patchcore: max_memory = %d is out of range" % v)
        o.max_memory = v
    # The library reads projection_dim x dim floats and n_starts indices from these: check the sizes.
    if options.get("coreset_projection") is not None:
        p = np.ascontiguousarray(options["coreset_projection"], dtype=np.float32)
        if options.get("projection_dim") is None and p.ndim == 2:
            o.projection_dim = _i32("projection_dim", p.shape[0])
        if p.shape != (o.projection_dim, o.dim):
            raise ValueError("patchcore: coreset_projection must be projection_dim x dim = %d x %d, not %s"
                             % (o.projection_dim, o.dim, p.shape))
        keep.append(p)
        o.coreset_projection = p.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    if options.get("coreset_starts") is not None:
        s = np.ascontiguousarray(options["coreset_starts"], dtype=np.int64).reshape(-1)
        if options.get("n_starts") is None:
            o.n_starts = _i32("n_starts", s.size)
        if s.size != o.n_starts:
            raise ValueError("patchcore: coreset_starts has %d entries, n_starts is %d" % (s.size, o.n_starts))
        keep.append(s)
        o.coreset_starts = s.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
    if options.get("roi") is not None:
        r = _roi_struct(options["roi"], keep)
        keep.append(r)
        o.roi = ctypes.pointer(r)
    return o


def _roi_struct(roi, keep):
    """A pc_image (channels 1) for a region of interest (docs/roi.md): a path (decoded to grey as PIL's
    convert("L") does: colour files are converted), a PIL image, or a 2-D uint8 array (H x W; non-zero
    = inspect). The array it views is appended to keep."""
    if _is_path(roi):
        img = _lib.Image()
        _check(_c.pc_image_load_grey(_lib.fsencode(roi), ctypes.byref(img)))
        try:
            n = img.width * img.height
            a = np.ctypeslib.as_array(img.data, shape=(n,)).copy().reshape(img.height, img.width)
        finally:
            _c.pc_image_free(ctypes.byref(img))
    else:
        if hasattr(roi, "convert") and hasattr(roi, "mode"):  # a PIL image
            roi = roi.convert("L")
        a = np.asarray(roi)
        if a.dtype != np.uint8 or a.ndim != 2:
            raise TypeError("patchcore: a region of interest must be a path or a 2-D uint8 array (H x W, non-zero = "
                            "inspect), not %s %s" % (a.dtype, a.shape))
        if a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError("patchcore: empty region of interest %s" % (a.shape,))
        _i32("mask height", a.shape[0]), _i32("mask width", a.shape[1])
        a = np.ascontiguousarray(a)
    keep.append(a)
    return _lib.Image(a.shape[1], a.shape[0], 1, a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))


def _path_array(paths):
    enc = [_lib.fsencode(p) for p in paths]
    arr = (ctypes.c_char_p * max(1, len(enc)))(*enc)
    return arr, enc


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

class Model:
    """A fitted PatchCore model (an owned pc_model). Make one with Model.fit or Model.load; free it
    with close() or a `with` block (or let it be garbage collected).

    predict() may run in several Python threads at once on one model (the library's predict is
    thread-safe and ctypes releases the GIL during the call); close(), calibrate() and
    set_thresholds() must not run concurrently with anything else on the model.

    image_errors: after Model.fit, the (path, message) of each input that could not be used."""

    def __init__(self, handle, image_errors=()):
        # Private: use Model.fit or Model.load.
        self._h = handle
        self.image_errors = list(image_errors)

    # --- creation ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, images, **options):
        """Fit a model on good images: a list of paths (str/bytes/PathLike, decoded by the library),
        or of arrays / PIL images (uint8 H x W x 3, or H x W grey). Options, all optional, as
        pc_fit_options (defaults: the reference's): weights (path; None looks in $PATCHCORE_WEIGHTS
        and torchvision's cache), arch ("resnet18", ...; inferred from the weights), layers ([2, 3]
        or "layer2,layer3"), resize (256), crop (224), patch (3), pre_dim (1024), dim (1024), k (1),
        sampler ("approx", "random", "none"), coreset_ratio (0.1), coreset_size (0: use the ratio),
        projection_dim (128), n_starts (10), seed (0), batch_size (8), reweight_b (0), bn_stats
        ("reference": the reference's batch-norm warm-up, the default; or "trained"), precision
        ("f32", the default, or "bf16": bfloat16 backbone convolutions on CPUs with AVX512-BF16 or
        AMX, a PatchcoreError elsewhere), jobs (batches in flight during feature extraction, 0 =
        the library's default; the same model for any value while batch_size >= the thread count),
        coreset_projection (projection_dim x dim float32) and coreset_starts (n_starts int64) to
        reproduce a reference run, roi (a region of interest, docs/roi.md: a mask file's path or a
        2-D uint8 array in the images' coordinates, non-zero = inspect; patches outside it stay out of
        the bank and the model scores inside it only), progress (callable(stage, done, total); return
        True to cancel), tile (S: cut each image into overlapping S x S tiles at native resolution,
        replacing resize and crop; docs/tiles.md), tile_overlap (0.25), tile_scale (1.0), stitch
        ("mean" or "max").

        Inputs that cannot be used are skipped: they are listed in the model's image_errors and one
        PatchcoreWarning says how many. When none is usable, PatchcoreError is raised (its
        image_errors say why)."""
        if _is_path(images) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)) or hasattr(images, "mode"):
            raise TypeError("patchcore: Model.fit takes a list of images (paths or arrays), not one image")
        images = list(images)
        if not images:
            raise ValueError("patchcore: Model.fit needs at least one image")
        kinds = {_is_path(x) for x in images}
        if len(kinds) != 1:
            raise TypeError("patchcore: give Model.fit all paths or all arrays, not a mix")
        keep = []
        cb = _Callbacks(options.pop("progress", None))
        opt = _fit_options(options, keep)
        opt.progress = cb.progress
        opt.on_image_error = cb.on_image_error
        h = ctypes.c_void_p()
        if kinds == {True}:
            arr, enc = _path_array(images)
            st = _c.pc_model_fit(ctypes.byref(opt), arr, len(enc), ctypes.byref(h))
        else:
            arrays = [as_rgb(x) for x in images]
            structs = (_lib.Image * len(arrays))(*[_image_struct(a) for a in arrays])
            st = _c.pc_model_fit_images(ctypes.byref(opt), structs, len(arrays), ctypes.byref(h))
        if st == 0 and cb.exc is None:
            model = cls(h.value, cb.image_errors)
        else:
            _c.pc_model_free(h)  # NULL after a failure; freed in case a callback raised after success
            cb.finish(st if st != 0 else _lib.PC_ERR_CANCELLED)
        if cb.image_errors:
            warnings.warn("patchcore: %d of %d training images could not be used (see Model.image_errors); "
                          "first: %s" % (len(cb.image_errors), len(images), cb.image_errors[0].message),
                          PatchcoreWarning, stacklevel=2)
        return model

    @classmethod
    def load(cls, path):
        """Load a model file (docs/model-format.md)."""
        h = ctypes.c_void_p()
        _check(_c.pc_model_load(_lib.fsencode(path), ctypes.byref(h)))
        return cls(h.value)

    # --- lifetime ---------------------------------------------------------------------------
    def close(self):
        """Free the C model now. Further use raises ValueError. Calling it twice is fine."""
        h, self._h = getattr(self, "_h", None), None
        if h and _c is not None:  # _c may be gone already when __del__ runs at interpreter exit
            _c.pc_model_free(h)

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def closed(self):
        return not self._h

    def _handle(self):
        if not self._h:
            raise ValueError("patchcore: the model is closed")
        return self._h

    # --- queries ----------------------------------------------------------------------------
    def save(self, path):
        """Write the model to one file, atomically (temporary file + rename)."""
        _check(_c.pc_model_save(self._handle(), _lib.fsencode(path)))

    @property
    def info(self):
        i = _lib.ModelInfo()
        _check(_c.pc_model_get_info(self._handle(), ctypes.byref(i)))
        samplers = {v: k for k, v in _lib.SAMPLERS.items()}
        return ModelInfo(
            arch=_c.pc_arch_name(i.arch).decode(), layers=tuple(i.layers[:i.n_layers]), resize=i.resize,
            crop=i.crop, patch=i.patch, pre_dim=i.pre_dim, dim=i.dim, k=i.k, grid=(i.grid_h, i.grid_w),
            sampler=samplers.get(i.sampler, str(i.sampler)), coreset_ratio=i.coreset_ratio, bank_size=i.bank_size,
            n_patches_total=i.n_patches_total, n_train_images=i.n_train_images, seed=i.seed,
            reweight_b=i.reweight_b, image_threshold=_opt(i.image_threshold),
            pixel_threshold=_opt(i.pixel_threshold), score_scale=_opt(i.score_scale),
            pixel_scale=_opt(i.pixel_scale),
            bn_stats={v: k for k, v in _lib.BN_STATS.items()}.get(i.bn_stats, str(i.bn_stats)),
            precision={v: k for k, v in _lib.PRECISIONS.items()}.get(i.precision, str(i.precision)),
            n_members=i.n_members, coverage_radius=_opt(i.coverage_radius),
            thresholds_stale=bool(i.thresholds_stale),
            tiling=None if i.tiling.tile == 0 else dict(
                tile=i.tiling.tile, overlap=i.tiling.overlap, scale=i.tiling.scale,
                stitch={v: k for k, v in _lib.STITCH.items()}.get(i.tiling.stitch, str(i.tiling.stitch))),
            roi=(i.roi_width, i.roi_height) if i.roi_width else None)

    @property
    def roi(self):
        """The stored region of interest as an H x W uint8 array (0 outside, 255 inside), or None."""
        img = _lib.Image()
        _check(_c.pc_model_roi(self._handle(), ctypes.byref(img)))
        if not img.data:
            return None
        n = img.width * img.height
        return np.ctypeslib.as_array(img.data, shape=(n,)).copy().reshape(img.height, img.width)

    def __repr__(self):
        if not self._h:
            return "<patchcore.Model (closed)>"
        i = self.info
        return "<patchcore.Model %s layers %s crop %d bank %d%s>" % (
            i.arch, ",".join(map(str, i.layers)), i.crop, i.bank_size,
            "" if i.image_threshold is None else " calibrated")

    # --- predict ----------------------------------------------------------------------------
    def predict(self, image, pixel_threshold=None, roi=None, ignore_roi=False, tile_overlap=None, tile_scale=None,
                stitch=None):
        """Score one image (a path, an array or a PIL image). pixel_threshold overrides the model's
        calibrated pixel threshold for the regions (None: the model's; regions are None when it has
        none). roi: a region of interest for this call instead of the model's (a path or a 2-D uint8
        array, non-zero = inspect; docs/roi.md); ignore_roi=True inspects the whole image even when the
        model has one. Thread-safe on one model.

        A tiled model (fit with tile=S; docs/tiles.md) returns a map of the image's size, shape
        (H, W), and its maximum as the score; tile_overlap, tile_scale and stitch ("mean", "max")
        override the model's for this call (a model fitted without tiling refuses them)."""
        h = self._handle()
        i = _lib.ModelInfo()
        _check(_c.pc_model_get_info(h, ctypes.byref(i)))
        po = None
        keep = []
        if (tile_overlap is not None or tile_scale is not None or stitch is not None or roi is not None
                or ignore_roi):
            po = _lib.PredictOptions()
            _c.pc_predict_options_init(ctypes.byref(po))
            if tile_overlap is not None or tile_scale is not None or stitch is not None:
                t = _lib.Tiling()
                ctypes.pointer(t)[0] = i.tiling
                _tiling_overrides(t, tile_overlap, tile_scale, stitch)
                po.tiling = ctypes.pointer(t)
                keep.append(t)
            po.ignore_roi = 1 if ignore_roi else 0
            if roi is not None:
                r = _roi_struct(roi, keep)
                po.roi = ctypes.pointer(r)
                keep.append(r)
        pop = ctypes.byref(po) if po is not None else None
        p = _lib.Prediction()
        g = _lib.Geometry()

        def run(img):
            # The map's size for this image (crop x crop, or the image's when the model tiles).
            mw, mh = ctypes.c_int32(), ctypes.c_int32()
            _check(_c.pc_model_map_size(h, img.width, img.height, pop, ctypes.byref(mw), ctypes.byref(mh)))
            m = np.empty((mh.value, mw.value), dtype=np.float32)
            mp = m.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            _check(_c.pc_model_predict_ex(h, ctypes.byref(img), pop, ctypes.byref(p), mp, ctypes.byref(g)))
            return m

        if _is_path(image):
            img = _lib.Image()
            _check(_c.pc_image_load(_lib.fsencode(image), ctypes.byref(img)))
            try:
                m = run(img)
            except PatchcoreError as e:  # name the file, as pc_model_predict_file's message does
                name = _lib.fsdecode(_lib.fsencode(image))
                if not e.message.startswith(name + ":"):
                    raise PatchcoreError(e.status, "%s: %s" % (name, e.message)) from None
                raise
            finally:
                _c.pc_image_free(ctypes.byref(img))
        else:
            a = as_rgb(image)
            m = run(_image_struct(a))
        calibrated = not math.isnan(i.image_threshold)
        pt = _NAN if pixel_threshold is None else float(pixel_threshold)
        regions = None
        if not (math.isnan(pt) and math.isnan(i.pixel_threshold)):
            regions = self._regions(m, g, pt)
        return Result(score=float(p.score), map=m, anomalous=bool(p.anomalous) if calibrated else None,
                      normalized=_opt(p.normalized) if calibrated else None, regions=regions,
                      geometry=_geometry_dict(g))

    def _regions(self, m, g, pixel_threshold):
        mp = m.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        cap = 64
        while True:
            buf = (_lib.Region * cap)()
            n = ctypes.c_int32()
            _check(_c.pc_model_regions(self._handle(), mp, ctypes.byref(g), pixel_threshold, buf, cap, ctypes.byref(n)))
            if n.value <= cap:
                break
            cap = n.value
        return [{"box": [r.x0, r.y0, r.x1, r.y1], "area": int(r.area), "peak": float(r.peak)}
                for r in buf[:n.value]]

    # --- growing the bank (docs/update.md) -------------------------------------------------
    def update(self, images, rule="auto", max_add=0, batch_size=8, jobs=0, max_memory=0, progress=None):
        """Add good images (paths, or arrays / PIL images) to the model's memory bank without refitting,
        as `patchcore update`: rule "auto" (radius for a greedy-coreset model that records its coverage
        radius, all for sampler none, ratio otherwise), "radius", "ratio" or "all"; max_add caps the
        entries added (0: no cap). Inputs that cannot be used are skipped (a PatchcoreWarning; listed in
        the model's image_errors); PatchcoreError when none is usable (the model is then unchanged).
        Thresholds are kept but flagged stale (info.thresholds_stale). Save the model to keep the
        result. Returns an UpdateReport."""
        if _is_path(images) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)) or hasattr(images, "mode"):
            images = [images]
        images = list(images)
        if not images:
            raise ValueError("patchcore: Model.update needs at least one image")
        kinds = {_is_path(x) for x in images}
        if len(kinds) != 1:
            raise TypeError("patchcore: give Model.update all paths or all arrays, not a mix")
        if rule not in _lib.UPDATE_RULES:
            raise ValueError("patchcore: unknown update rule %r (auto, radius, ratio, all)" % (rule,))
        uo = _lib.UpdateOptions()
        _c.pc_update_options_init(ctypes.byref(uo))
        uo.rule = _lib.UPDATE_RULES[rule]
        uo.max_add = _i32("max_add", max_add, 0)
        uo.batch_size = _i32("batch_size", batch_size, 1, 256)
        uo.jobs = _i32("jobs", jobs, 0, 256)
        if int(max_memory) < 0:
            raise ValueError("patchcore: max_memory must be >= 0")
        uo.max_memory = int(max_memory)
        cb = _Callbacks(progress)
        uo.progress = cb.progress
        uo.on_image_error = cb.on_image_error
        rep = _lib.UpdateReport()
        if kinds == {True}:
            arr, enc = _path_array(images)
            st = _c.pc_model_update(self._handle(), ctypes.byref(uo), arr, len(enc), ctypes.byref(rep))
        else:
            arrays = [as_rgb(x) for x in images]
            structs = (_lib.Image * len(arrays))(*[_image_struct(a) for a in arrays])
            st = _c.pc_model_update_images(self._handle(), ctypes.byref(uo), structs, len(arrays), ctypes.byref(rep))
        cb.finish(st)
        if cb.image_errors:
            self.image_errors.extend(cb.image_errors)
            warnings.warn("patchcore: %d of %d images could not be used (see Model.image_errors); first: %s"
                          % (len(cb.image_errors), len(images), cb.image_errors[0].message), PatchcoreWarning,
                          stacklevel=2)
        return _update_report(rep)

    def merge(self, other):
        """Merge another model's memory bank into this one (its entries follow this model's), as
        `patchcore merge`: both must have the same backbone and feature settings (PatchcoreError naming
        the first difference otherwise). Thresholds are kept but flagged stale. Returns an
        UpdateReport."""
        if not isinstance(other, Model):
            raise TypeError("patchcore: Model.merge takes another Model")
        rep = _lib.UpdateReport()
        _check(_c.pc_model_merge(self._handle(), other._handle(), ctypes.byref(rep)))
        return _update_report(rep)

    # --- thresholds -------------------------------------------------------------------------
    def calibrate(self, good, method="conformal", param=None, defective=None, masks=None, progress=None,
                  mask_rule="full"):
        """Set the model's thresholds from held-out good images (paths), as `patchcore calibrate`:
        method "conformal" (param = false-alarm rate, default 0.01), "quantile" (q, default 0.99),
        "mean-std" (k, default 3), "false-alarm" (rate, default 0.01); or, with defective images and
        their ground-truth mask paths (masks[i] for defective[i]), "f1" (chosen automatically).
        mask_rule: which pixels of a resized mask are anomalous, "full" (value 255, the reference
        implementation's; default) or "half" (value >= 128); it matters only with masks.
        Save the model afterwards to keep them. Returns a CalibrationResult."""
        good = [good] if _is_path(good) else list(good)
        defective = [] if defective is None else ([defective] if _is_path(defective) else list(defective))
        masks = [] if masks is None else ([masks] if _is_path(masks) else list(masks))
        if len(masks) != len(defective):
            raise ValueError("patchcore: %d defective images but %d masks" % (len(defective), len(masks)))
        if defective:
            method = "f1"
        m = _c.pc_calib_method_from_name(str(method).encode())
        if m < 0:
            raise ValueError("patchcore: unknown calibration method %r (conformal, quantile, mean-std, "
                             "false-alarm, f1)" % method)
        rule = _c.pc_mask_rule_from_name(str(mask_rule).encode())
        if rule < 0:
            raise ValueError("patchcore: unknown mask_rule %r (full, half)" % (mask_rule,))
        if param is None:
            param = {"quantile": 0.99, "mean-std": 3.0}.get(method, _lib.PC_THRESHOLD_DEFAULT_RATE)
        g_arr, g_enc = _path_array(good)
        d_arr, d_enc = _path_array(defective)
        k_arr, k_enc = _path_array(masks)
        cb = _Callbacks(progress)
        rep = _lib.Calibration()
        st = _c.pc_model_calibrate_ex(self._handle(), m, float(param), g_arr, len(g_enc), d_arr, k_arr, len(d_enc),
                                      rule, cb.progress, None, ctypes.byref(rep))
        cb.finish(st)
        return CalibrationResult(rep.image_threshold, rep.pixel_threshold, rep.score_scale, rep.n_good,
                                 rep.n_defective, rep.pixel_scale)

    def set_thresholds(self, image_threshold=None, pixel_threshold=None, score_scale=None):
        """Set (or clear, with None) the image and pixel thresholds and the normalised score's scale
        (> 0; None keeps the model's, or 1 when it has none and an image threshold is set)."""
        h = self._handle()
        if score_scale is None:
            cur = self.info.score_scale
            score_scale = cur if cur is not None else (1.0 if image_threshold is not None else _NAN)
        _check(_c.pc_model_set_thresholds(h, _NAN if image_threshold is None else float(image_threshold),
                                          _NAN if pixel_threshold is None else float(pixel_threshold),
                                          float(score_scale)))
