"""The collector's compiled helper: C loops for the per-record work numpy cannot do in few passes.

The C sources beside this file are compiled once into a shared library under `_build/` (named by a hash of the
sources and flags, so an edit rebuilds) with the machine's C compiler, and loaded with ctypes: no Python C API, no
build system, nothing to install from outside. `./sluice` builds it at install; a process that finds no library
builds it on first use. Where no compiler works, `library()` returns None and every caller keeps its numpy path,
which the tests hold to the same results. `SLUICE_NATIVE=0` turns the helper off (tests compare both paths).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BUILD_DIR = HERE / "_build"
CFLAGS = ("-O2", "-std=c11", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-fno-strict-aliasing")


# Argument types of the helper's functions: arrays go as raw pointers (callers pass contiguous arrays).
POINTER, INT64, UINT64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64


class NativeBuildError(RuntimeError):
    """The C compiler is missing or refused the sources."""


def enabled() -> bool:
    """Whether the compiled helper may be used at all (`SLUICE_NATIVE=0` says no)."""
    return os.environ.get("SLUICE_NATIVE", "1") not in ("0", "false", "no", "off")


def _compiler() -> str | None:
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def sources() -> list[Path]:
    """The C files compiled into the library: every `*.c` beside this module."""
    return sorted(HERE.glob("*.c"))


def library_path() -> Path:
    """Where the library for the current sources lives once built."""
    digest = hashlib.sha256(" ".join(CFLAGS).encode())
    for source in sorted([*sources(), *HERE.glob("*.h")]):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return BUILD_DIR / f"libsluiceflow-{digest.hexdigest()[:16]}.so"


def build() -> Path:
    """Compile the sources (if this version is not built yet) and return the library path."""
    target = library_path()
    if target.exists():
        return target
    compiler = _compiler()
    if compiler is None:
        raise NativeBuildError("no C compiler (cc, gcc or clang) on PATH")
    BUILD_DIR.mkdir(exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=BUILD_DIR, suffix=".so.partial")
    os.close(handle)
    command = [compiler, *CFLAGS, "-o", partial, *map(str, sources())]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        os.unlink(partial)
        raise NativeBuildError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
    os.replace(partial, target)  # atomic: concurrent builders never load a half-written file
    for stale in BUILD_DIR.glob("libsluiceflow-*.so"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def compiled_function(name: str, argtypes: list[Any], restype: Any) -> Callable[..., Any] | None:
    """A function of the helper with its signature declared, or None (the caller's numpy path).

    None also on big-endian machines: the C code reads and writes `FLOW_DTYPE` records in the machine's byte
    order, which is the dtype's ("<" fields) only on little-endian ones.
    """
    lib = library()
    if lib is None or sys.byteorder != "little":
        return None
    function = getattr(lib, name)
    function.argtypes = argtypes
    function.restype = restype
    return function  # type: ignore[no-any-return]


@cache
def library() -> ctypes.CDLL | None:
    """The loaded helper, built if needed; None when disabled or impossible (callers fall back to numpy)."""
    if not enabled():
        return None
    try:
        return ctypes.CDLL(str(build()))
    except (NativeBuildError, OSError) as error:
        logger.warning("compiled flow helper unavailable, using the numpy path: %s", error)
        return None

