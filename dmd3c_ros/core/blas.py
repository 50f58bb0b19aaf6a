"""One BLAS thread: numpy's OpenBLAS (and OpenCV's) must not spin on the cores the frame needs.

numpy's matrix products go to OpenBLAS, which runs them on a pool of one thread per core; after a
product its idle workers busy-wait (OpenBLAS's thread timeout, about a tenth of a second) before
they sleep. The only products of a frame are tiny (the LiDAR projection: a sweep times a 3x3 or
3x4 matrix), so the pool gains nothing there, and its spinning workers then hold the second core
while ONNX Runtime's two threads and the classical strips (``core.classical``) want it. On 2
cores, limiting BLAS to one thread took the KITTI frame's network stage from 39-44 ms to 30-32 ms
and let the classical step's strips win (``docs/benchmarks.md``, "Round 8").

The nodes and the ``dmd3c`` commands that run a backend apply it once at start
(``core.process``), through threadpoolctl, to every BLAS library loaded in the process. Not
training: torch's products are large and its threads are the trainer's ``threads``. Left alone
with ``DMD3C_SINGLE_THREAD_BLAS=0``, or where the environment already says how many threads
BLAS may use (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ...).
"""
from __future__ import annotations

from dmd3c_ros.core.machine import environment_keeps

OPT_OUT = "DMD3C_SINGLE_THREAD_BLAS"
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def single_thread_blas() -> str:
    """Limit every loaded BLAS library to one thread (see the module docstring); returns what
    was done, as one line for a log."""
    kept = environment_keeps("BLAS threads", OPT_OUT, _THREAD_VARIABLES, plural=True)
    if kept:
        return kept
    try:
        import cv2  # noqa: F401  (numpy and OpenCV each bring an OpenBLAS: load both first,
        import numpy  # noqa: F401  so that the limit reaches them)
        from threadpoolctl import ThreadpoolController
    except ImportError as error:
        return f"BLAS threads left as they are ({error})"
    libraries = ThreadpoolController().select(user_api="blas")
    if not libraries.info():
        return "BLAS threads left as they are (no BLAS library loaded)"
    libraries.limit(limits=1)
    names = ", ".join(sorted({entry["prefix"] for entry in libraries.info()}))
    return f"BLAS limited to one thread ({names}; {OPT_OUT}=0 leaves it)"


__all__ = ["OPT_OUT", "single_thread_blas"]
