"""_lib.py - finding and loading libpatchcore, and ctypes mirrors of include/patchcore.h.

The structs below copy the header's field order and types exactly (tests/test_python.sh compiles a
probe with the C compiler and checks every size and offset against these). C enums are `int` here
(GCC and Clang on the platforms we build for); the probe checks that too.

Library lookup, first hit wins (docs/python.md):
  1. $PATCHCORE_LIBRARY, a path to the shared library (an error if it does not load: no fallback);
  2. next to the package: the library directory `cmake --install` recorded in _paths.py (relative to
     the package first, so that a tree staged with DESTDIR or moved as a whole still finds its own
     library; then the absolute one), and the package directory itself;
  3. the system's search: ctypes.util.find_library("patchcore"), then "libpatchcore.so.0".
"""
import ctypes
import ctypes.util
import os

# The header this module mirrors. The library must have the same MAJOR.MINOR: until 1.0 a minor
# release may change a struct (pc_fit_options_init writes sizeof(pc_fit_options) bytes into ours).
HEADER_VERSION = (0, 2, 0)
SONAME = "libpatchcore.so.%d" % HEADER_VERSION[0]

PC_MAX_LAYERS = 4
PC_THRESHOLD_DEFAULT_RATE = 0.01
# pc_mask_rule (include/patchcore.h): which resized ground-truth mask pixels are anomalous.
PC_MASK_RULE_FULL = 0  # value == 255, the reference implementation's; the default
PC_MASK_RULE_HALF = 1  # value >= 128

STATUS_NAMES = [
    "PC_OK", "PC_ERR_INVALID_ARGUMENT", "PC_ERR_NO_MEMORY", "PC_ERR_IO", "PC_ERR_FORMAT",
    "PC_ERR_UNSUPPORTED", "PC_ERR_TOO_LARGE", "PC_ERR_NOT_FOUND", "PC_ERR_SHAPE", "PC_ERR_VERSION",
    "PC_ERR_CANCELLED", "PC_ERR_INTERNAL",
]
PC_ERR_CANCELLED = 10

SAMPLERS = {"approx": 0, "random": 1, "none": 2}  # pc_sampler, named as `patchcore fit --sampler`

c_enum = ctypes.c_int


class Image(ctypes.Structure):  # pc_image
    _fields_ = [("width", ctypes.c_int32), ("height", ctypes.c_int32), ("channels", ctypes.c_int32),
                ("data", ctypes.POINTER(ctypes.c_uint8))]


class Geometry(ctypes.Structure):  # pc_geometry
    _fields_ = [("orig_width", ctypes.c_int32), ("orig_height", ctypes.c_int32),
                ("resized_width", ctypes.c_int32), ("resized_height", ctypes.c_int32),
                ("crop_left", ctypes.c_int32), ("crop_top", ctypes.c_int32), ("crop_size", ctypes.c_int32),
                ("map_width", ctypes.c_int32), ("map_height", ctypes.c_int32)]


class Tiling(ctypes.Structure):  # pc_tiling
    _fields_ = [("tile", ctypes.c_int32), ("overlap", ctypes.c_double), ("scale", ctypes.c_double),
                ("stitch", c_enum)]


STITCH = {"mean": 0, "max": 1}  # pc_stitch


PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int64)
IMAGE_ERROR_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, c_enum, ctypes.c_char_p)


class FitOptions(ctypes.Structure):  # pc_fit_options
    _fields_ = [
        ("weights", ctypes.c_char_p),
        ("arch", c_enum),
        ("layers", ctypes.c_int32 * PC_MAX_LAYERS),
        ("n_layers", ctypes.c_int32),
        ("resize", ctypes.c_int32),
        ("crop", ctypes.c_int32),
        ("patch", ctypes.c_int32),
        ("pre_dim", ctypes.c_int32),
        ("dim", ctypes.c_int32),
        ("k", ctypes.c_int32),
        ("sampler", c_enum),
        ("coreset_ratio", ctypes.c_double),
        ("coreset_size", ctypes.c_int64),
        ("projection_dim", ctypes.c_int32),
        ("n_starts", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("batch_size", ctypes.c_int32),
        ("reweight_b", ctypes.c_int32),
        ("coreset_projection", ctypes.POINTER(ctypes.c_float)),
        ("coreset_starts", ctypes.POINTER(ctypes.c_int64)),
        ("progress", PROGRESS_FN),
        ("progress_user", ctypes.c_void_p),
        ("on_image_error", IMAGE_ERROR_FN),
        ("on_image_error_user", ctypes.c_void_p),
        ("max_memory", ctypes.c_int64),
        ("bn_stats", c_enum),
        ("precision", c_enum),
        ("jobs", ctypes.c_int32),
        ("tiling", Tiling),
        ("roi", ctypes.POINTER(Image)),
    ]


class ModelInfo(ctypes.Structure):  # pc_model_info
    _fields_ = [
        ("arch", c_enum),
        ("layers", ctypes.c_int32 * PC_MAX_LAYERS),
        ("n_layers", ctypes.c_int32),
        ("resize", ctypes.c_int32),
        ("crop", ctypes.c_int32),
        ("patch", ctypes.c_int32),
        ("pre_dim", ctypes.c_int32),
        ("dim", ctypes.c_int32),
        ("k", ctypes.c_int32),
        ("grid_h", ctypes.c_int32),
        ("grid_w", ctypes.c_int32),
        ("sampler", c_enum),
        ("coreset_ratio", ctypes.c_double),
        ("bank_size", ctypes.c_int64),
        ("n_patches_total", ctypes.c_int64),
        ("n_train_images", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("reweight_b", ctypes.c_int32),
        ("image_threshold", ctypes.c_double),
        ("pixel_threshold", ctypes.c_double),
        ("score_scale", ctypes.c_double),
        ("pixel_scale", ctypes.c_double),
        ("bn_stats", c_enum),
        ("bn_stats_implicit", ctypes.c_int32),
        ("precision", c_enum),
        ("n_members", ctypes.c_int32),
        ("tiling", Tiling),
        ("roi_width", ctypes.c_int32),
        ("roi_height", ctypes.c_int32),
        ("coverage_radius", ctypes.c_double),
        ("thresholds_stale", ctypes.c_int32),
    ]


class PredictOptions(ctypes.Structure):  # pc_predict_options
    _fields_ = [("tiling", ctypes.POINTER(Tiling)), ("roi", ctypes.POINTER(Image)), ("ignore_roi", ctypes.c_int32)]


BN_STATS = {"reference": 0, "trained": 1}  # pc_bn_stats
PRECISIONS = {"f32": 0, "bf16": 1}  # pc_precision


class Prediction(ctypes.Structure):  # pc_prediction
    _fields_ = [("score", ctypes.c_float), ("normalized", ctypes.c_double), ("anomalous", ctypes.c_int32)]


class Region(ctypes.Structure):  # pc_region
    _fields_ = [("label", ctypes.c_int32), ("x0", ctypes.c_int32), ("y0", ctypes.c_int32),
                ("x1", ctypes.c_int32), ("y1", ctypes.c_int32), ("area", ctypes.c_int64),
                ("peak", ctypes.c_float), ("peak_x", ctypes.c_int32), ("peak_y", ctypes.c_int32)]


class Calibration(ctypes.Structure):  # pc_calibration
    _fields_ = [("image_threshold", ctypes.c_double), ("pixel_threshold", ctypes.c_double),
                ("score_scale", ctypes.c_double), ("n_good", ctypes.c_size_t), ("n_defective", ctypes.c_size_t),
                ("pixel_scale", ctypes.c_double)]


class UpdateOptions(ctypes.Structure):  # pc_update_options
    _fields_ = [("rule", c_enum), ("max_add", ctypes.c_int64), ("batch_size", ctypes.c_int32), ("jobs", ctypes.c_int32),
                ("max_memory", ctypes.c_int64), ("progress", PROGRESS_FN), ("progress_user", ctypes.c_void_p),
                ("on_image_error", IMAGE_ERROR_FN), ("on_image_error_user", ctypes.c_void_p)]


class UpdateReport(ctypes.Structure):  # pc_update_report
    _fields_ = [("rule", c_enum), ("n_images", ctypes.c_int32), ("n_patches", ctypes.c_int64),
                ("n_added", ctypes.c_int64), ("bank_size", ctypes.c_int64), ("radius_before", ctypes.c_double),
                ("radius_new", ctypes.c_double), ("radius_after", ctypes.c_double)]


UPDATE_RULES = {"auto": 0, "ratio": 1, "radius": 2, "all": 3}  # pc_update_rule


# The structs the layout test compares with the C compiler's, by their C names.
STRUCTS = {"pc_image": Image, "pc_geometry": Geometry, "pc_fit_options": FitOptions,
           "pc_model_info": ModelInfo, "pc_prediction": Prediction, "pc_region": Region,
           "pc_calibration": Calibration, "pc_tiling": Tiling, "pc_predict_options": PredictOptions,
           "pc_update_options": UpdateOptions, "pc_update_report": UpdateReport}

_P = ctypes.POINTER
_vp = ctypes.c_void_p  # pc_model * (opaque)
_cpp = _P(ctypes.c_char_p)
# name: (restype, argtypes)
_PROTOTYPES = {
    "pc_version": (ctypes.c_char_p, []),
    "pc_version_number": (ctypes.c_int32, []),
    "pc_status_str": (ctypes.c_char_p, [c_enum]),
    "pc_last_error": (ctypes.c_char_p, []),
    "pc_set_num_threads": (None, [ctypes.c_int32]),
    "pc_get_num_threads": (ctypes.c_int32, []),
    "pc_set_num_threads_local": (None, [ctypes.c_int32]),
    "pc_default_num_threads": (ctypes.c_int32, []),
    "pc_arch_name": (ctypes.c_char_p, [c_enum]),
    "pc_arch_from_name": (c_enum, [ctypes.c_char_p]),
    "pc_image_load": (c_enum, [ctypes.c_char_p, _P(Image)]),
    "pc_image_free": (None, [_P(Image)]),
    "pc_fit_options_init": (None, [_P(FitOptions)]),
    "pc_model_fit": (c_enum, [_P(FitOptions), _cpp, ctypes.c_size_t, _P(_vp)]),
    "pc_model_fit_images": (c_enum, [_P(FitOptions), _P(Image), ctypes.c_size_t, _P(_vp)]),
    "pc_model_save": (c_enum, [_vp, ctypes.c_char_p]),
    "pc_model_load": (c_enum, [ctypes.c_char_p, _P(_vp)]),
    "pc_model_free": (None, [_vp]),
    "pc_model_get_info": (c_enum, [_vp, _P(ModelInfo)]),
    "pc_model_predict": (c_enum, [_vp, _P(Image), _P(Prediction), _P(ctypes.c_float), _P(Geometry)]),
    "pc_model_predict_ex": (c_enum, [_vp, _P(Image), _P(PredictOptions), _P(Prediction), _P(ctypes.c_float),
                                     _P(Geometry)]),
    "pc_model_map_size": (c_enum, [_vp, ctypes.c_int32, ctypes.c_int32, _P(PredictOptions), _P(ctypes.c_int32),
                                   _P(ctypes.c_int32)]),
    "pc_model_predict_file": (c_enum, [_vp, ctypes.c_char_p, _P(Prediction), _P(ctypes.c_float), _P(Geometry)]),
    "pc_image_load_grey": (c_enum, [ctypes.c_char_p, _P(Image)]),
    "pc_predict_options_init": (None, [_P(PredictOptions)]),
    "pc_model_predict_ex": (c_enum, [_vp, _P(Image), _P(PredictOptions), _P(Prediction), _P(ctypes.c_float),
                                     _P(Geometry)]),
    "pc_model_roi": (c_enum, [_vp, _P(Image)]),
    "pc_model_set_thresholds": (c_enum, [_vp, ctypes.c_double, ctypes.c_double, ctypes.c_double]),
    "pc_model_regions": (c_enum, [_vp, _P(ctypes.c_float), _P(Geometry), ctypes.c_double, _P(Region),
                                  ctypes.c_int32, _P(ctypes.c_int32)]),
    "pc_calib_method_from_name": (ctypes.c_int, [ctypes.c_char_p]),
    "pc_model_calibrate": (c_enum, [_vp, c_enum, ctypes.c_double, _cpp, ctypes.c_size_t, _cpp, _cpp,
                                    ctypes.c_size_t, PROGRESS_FN, ctypes.c_void_p, _P(Calibration)]),
    "pc_update_options_init": (None, [_P(UpdateOptions)]),
    "pc_model_update": (c_enum, [_vp, _P(UpdateOptions), _cpp, ctypes.c_size_t, _P(UpdateReport)]),
    "pc_model_update_images": (c_enum, [_vp, _P(UpdateOptions), _P(Image), ctypes.c_size_t, _P(UpdateReport)]),
    "pc_model_merge": (c_enum, [_vp, _vp, _P(UpdateReport)]),
    "pc_mask_rule_from_name": (ctypes.c_int, [ctypes.c_char_p]),
    "pc_mask_rule_name": (ctypes.c_char_p, [c_enum]),
    "pc_model_calibrate_ex": (c_enum, [_vp, c_enum, ctypes.c_double, _cpp, ctypes.c_size_t, _cpp, _cpp,
                                       ctypes.c_size_t, c_enum, PROGRESS_FN, ctypes.c_void_p, _P(Calibration)]),
}


def _candidates():
    """Where to look for the library, in order: (description, path or name) pairs."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    try:
        from . import _paths  # written by `cmake --install`
    except ImportError:
        _paths = None
    if _paths is not None:
        rel = getattr(_paths, "LIBDIR_RELATIVE", None)
        if rel:
            out.append(("installed (relative)", os.path.normpath(os.path.join(here, rel, SONAME))))
        absdir = getattr(_paths, "LIBDIR", None)
        if absdir:
            out.append(("installed", os.path.join(absdir, SONAME)))
    out.append(("package directory", os.path.join(here, SONAME)))
    found = ctypes.util.find_library("patchcore")
    if found:
        out.append(("find_library", found))
    out.append(("dynamic linker", SONAME))
    return out


def _load():
    env = os.environ.get("PATCHCORE_LIBRARY")
    if env:
        try:
            return ctypes.CDLL(env), env
        except OSError as e:
            raise ImportError("patchcore: PATCHCORE_LIBRARY=%s does not load: %s" % (env, e)) from e
    tried = []
    for what, path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append("%s (%s): absent" % (path, what))
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s): %s" % (path, what, e))
    raise ImportError("patchcore: libpatchcore not found; set PATCHCORE_LIBRARY to the shared library's path. "
                      "Tried:\n  " + "\n  ".join(tried))


def _bind(lib):
    for name, (res, args) in _PROTOTYPES.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    got = lib.pc_version_number()
    if (got // 1000000, got // 1000 % 1000) != HEADER_VERSION[:2]:
        raise ImportError("patchcore: the library is version %s but this package mirrors the %d.%d header"
                          % (lib.pc_version().decode(), HEADER_VERSION[0], HEADER_VERSION[1]))
    return lib


lib, path = _load()
_bind(lib)


def fsencode(p):
    """A path (str, bytes or os.PathLike) as the bytes the C library takes."""
    return os.fsencode(p)


def fsdecode(b):
    return os.fsdecode(b) if b is not None else None

