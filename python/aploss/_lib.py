"""aploss._lib: ctypes declarations of the C API in include/aploss/aploss.h, and the loader.

The library is found, in order, at the file named by the environment variable APLOSS_LIBRARY,
or at build/libaploss.so relative to the repository root (this file is
<root>/python/aploss/_lib.py). Nothing here needs torch; aploss.torch builds on it.

The structures below mirror aploss.h field for field (tests/python/test_api_layout.py checks
the names and order against the header, so a change to the C API cannot silently shift them).
"""
import ctypes
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BUILD_HINT = ("build it from the repository root with the README's commands "
               "(bash tests/run.sh, or: cmake -S . -B build && cmake --build build), "
               "or set APLOSS_LIBRARY to the path of a libaploss.so")


def _library_path():
    env = os.environ.get("APLOSS_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise ImportError("aploss: APLOSS_LIBRARY=%s: no such file; %s" % (env, _BUILD_HINT))
        return env
    path = os.path.join(_ROOT, "build", "libaploss.so")
    if not os.path.isfile(path):
        raise ImportError("aploss: %s not found (APLOSS_LIBRARY not set); %s" % (path, _BUILD_HINT))
    return path


# ---- enums (aploss.h) ----
APL_OK = 0
STATUS_NAMES = ["APL_OK", "APL_ERR_ARG", "APL_ERR_INPUT", "APL_ERR_NOMEM", "APL_ERR_IO",
                "APL_ERR_FORMAT", "APL_ERR_CUDA", "APL_ERR_NODEVICE", "APL_ERR_UNAVAILABLE"]
APL_ERR_ARG, APL_ERR_INPUT = 1, 2
LOSSES = {"ap": 0, "alrp": 1, "pap": 2}
APL_CPU, APL_GPU = 0, 1
APL_MSG_LEN = 512


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * APL_MSG_LEN)]


class Problem(ctypes.Structure):
    _fields_ = [("loss", ctypes.c_int),
                ("logits", ctypes.c_void_p),
                ("targets", ctypes.c_void_p),
                ("n", ctypes.c_size_t),
                ("delta", ctypes.c_double),
                ("aux", ctypes.c_void_p),
                ("n_aux", ctypes.c_size_t),
                ("params", ctypes.c_void_p),
                ("param_rows", ctypes.c_int),
                ("topk", ctypes.c_size_t),
                ("threads", ctypes.c_int),
                ("stream", ctypes.c_void_p)]


class Output(ctypes.Structure):
    _fields_ = [("grad", ctypes.c_void_p), ("grad_aux", ctypes.c_void_p)]


class Result(ctypes.Structure):
    _fields_ = [("loss", ctypes.c_double),
                ("loss_loc", ctypes.c_double),
                ("positives", ctypes.c_size_t),
                ("valid_negatives", ctypes.c_size_t)]


VariantFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(Problem), ctypes.POINTER(Output),
                             ctypes.POINTER(Result), ctypes.POINTER(Error))


class Variant(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p),
                ("fn", ctypes.c_void_p),
                ("device_fn", ctypes.c_void_p),
                ("device", ctypes.c_int),
                ("losses", ctypes.c_uint),
                ("backend", ctypes.c_char_p),
                ("quadratic", ctypes.c_int),
                ("threaded", ctypes.c_int),
                ("description", ctypes.c_char_p)]


path = _library_path()
try:
    lib = ctypes.CDLL(path)  # CDLL releases the GIL during every call
except OSError as e:
    raise ImportError("aploss: cannot load %s: %s; %s" % (path, e, _BUILD_HINT)) from e

_P, _O, _R, _E = (ctypes.POINTER(Problem), ctypes.POINTER(Output), ctypes.POINTER(Result),
                  ctypes.POINTER(Error))
_V = ctypes.POINTER(Variant)
lib.apl_variants.argtypes = [ctypes.POINTER(ctypes.c_size_t)]
lib.apl_variants.restype = _V
lib.apl_variant_runnable.argtypes = [_V, _E]
lib.apl_variant_runnable.restype = ctypes.c_int
lib.apl_variant_has_loss.argtypes = [_V, ctypes.c_int]
lib.apl_variant_has_loss.restype = ctypes.c_int
lib.apl_run.argtypes = [_V, _P, _O, _R, _E]
lib.apl_run.restype = ctypes.c_int
lib.apl_check_inputs.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.c_double, _E]
lib.apl_check_inputs.restype = ctypes.c_int
lib.apl_check_problem.argtypes = [_P, _E]
lib.apl_check_problem.restype = ctypes.c_int
lib.apl_reference.argtypes = [_P, ctypes.c_void_p, ctypes.c_void_p, _R, _E]
lib.apl_reference.restype = ctypes.c_int
lib.apl_threads.argtypes = [ctypes.c_int]
lib.apl_threads.restype = ctypes.c_int
lib.apl_pap_params.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_float)),
                               ctypes.POINTER(ctypes.c_int), _E]
lib.apl_pap_params.restype = ctypes.c_int
lib.apl_check_pap_params.argtypes = [ctypes.c_void_p, ctypes.c_int, _E]
lib.apl_check_pap_params.restype = ctypes.c_int


class VariantInfo:
    """One row of the variant table, as Python values; `row` points at the C struct."""

    def __init__(self, row):
        v = row.contents
        self.row = row
        self.name = v.name.decode()
        self.device = "cuda" if v.device == APL_GPU else "cpu"
        self.losses = [name for name, l in LOSSES.items() if lib.apl_variant_has_loss(row, l)]
        self.backend = v.backend.decode()
        self.quadratic = bool(v.quadratic)
        self.threaded = bool(v.threaded)
        self.description = v.description.decode()
        self.device_fn = VariantFn(v.device_fn) if v.device_fn else None
        err = Error()
        self.runnable = bool(lib.apl_variant_runnable(row, ctypes.byref(err)))
        self.why_not = "" if self.runnable else err.msg.decode(errors="replace")

    def __repr__(self):
        return "<aploss variant %s (%s, %s, losses %s%s)>" % (
            self.name, self.device, self.backend, ",".join(self.losses),
            "" if self.runnable else ", not runnable: " + self.why_not)


def variants():
    """Every row of the table (src/registry.c), in table order. Runnability is probed once per
    call, so a GPU row reflects the devices present now."""
    count = ctypes.c_size_t()
    table = lib.apl_variants(ctypes.byref(count))
    return [VariantInfo(ctypes.cast(ctypes.addressof(table[i]), _V)) for i in range(count.value)]


def message(err):
    return err.msg.decode(errors="replace")


# ---- the sorted algorithm's phases (include/aploss/phases.h), for aploss.dist ----
# A plan is used through its pointer only (the struct's fields are not read here).
APL_HIST_WORDS = 3
_c = ctypes
lib.apl_sorted_plan_create.argtypes = [_c.c_void_p, _c.c_size_t, _c.c_double,
                                       _c.POINTER(_c.c_void_p), _E]
lib.apl_sorted_plan_create.restype = _c.c_int
lib.apl_sorted_plan_free.argtypes = [_c.c_void_p]
lib.apl_sorted_plan_free.restype = None
lib.apl_sorted_hist_len.argtypes = [_c.c_void_p]
lib.apl_sorted_hist_len.restype = _c.c_size_t
lib.apl_sorted_histogram.argtypes = [_c.c_void_p, _c.c_void_p, _c.c_void_p, _c.c_size_t,
                                     _c.c_void_p, _c.c_void_p, _c.c_int,
                                     _c.POINTER(_c.c_size_t), _E]
lib.apl_sorted_histogram.restype = _c.c_int
lib.apl_sorted_finish_ap.argtypes = [_c.c_void_p, _c.c_void_p, _c.POINTER(_c.c_double), _E]
lib.apl_sorted_finish_ap.restype = _c.c_int
lib.apl_sorted_apply.argtypes = [_c.c_void_p, _c.c_void_p, _c.c_void_p, _c.c_size_t,
                                 _c.c_void_p, _c.c_void_p, _c.c_int, _E]
lib.apl_sorted_apply.restype = _c.c_int
# The range test `sorted` uses to hand a call to `pruned` (kernels/common/kernels.h; exported,
# not in the public headers): the distributed driver takes the same decision from the same data.
lib.apl_segments_in_range.argtypes = [_c.c_float, _c.c_float, _c.c_size_t, _c.c_double]
lib.apl_segments_in_range.restype = _c.c_int
