"""The collector's compiled helper: C loops for the per-record work numpy cannot do in few passes.

The C sources beside this file are built at install (`python -m collector.native`, which `./sluice` runs) into an
extension module through a declared cffi build (`build.py`): the functions Python calls are declared once, in
`sluice_native.h`, and the compiler holds both the C definitions and the calls to that header. Nothing is compiled
at run time: a process that finds no module built from the current sources says so once and every caller keeps its
numpy path, which the tests hold to the same results. `SLUICE_NATIVE=0` turns the helper off (tests compare both
paths); big-endian machines never use it (the C code writes `FLOW_DTYPE` records in the machine's byte order).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MODULE = "collector.native._sluice_native"


def enabled() -> bool:
    """Whether the compiled helper may be used at all (`SLUICE_NATIVE=0` says no)."""
    return os.environ.get("SLUICE_NATIVE", "1") not in ("0", "false", "no", "off")


def _load() -> ModuleType | None:
    """The built module when it was built from the current sources; None (with the reason logged) otherwise."""
    if sys.byteorder != "little":
        logger.warning("compiled flow helper not used on a big-endian machine; using the numpy path")
        return None
    try:
        module = importlib.import_module(MODULE)
    except ImportError as error:
        logger.warning("compiled flow helper not built (python -m collector.native builds it); using the numpy "
                       "path: %s", error)
        return None
    from collector.native.build import source_hash

    built = module.ffi.string(module.lib.sluice_source_hash()).decode()
    if built != source_hash():
        logger.warning("compiled flow helper was built from other sources (python -m collector.native rebuilds "
                       "it); using the numpy path")
        return None
    return module


@cache
def extension() -> ModuleType | None:
    """The loaded helper, or None when it is off, absent or stale (callers use numpy)."""
    return _load() if enabled() else None


def compiled_function(name: str) -> Callable[..., Any] | None:
    """The helper's function `name`, taking numpy arrays or addresses for its pointer parameters; None when the
    helper is unavailable (the caller's numpy path).

    Arrays must be C-contiguous: the C code walks them as plain memory. Nothing is copied.
    """
    module = extension()
    if module is None:
        return None
    ffi, function = module.ffi, getattr(module.lib, name)
    kinds = [ffi.getctype(arg) if arg.kind == "pointer" else None for arg in ffi.typeof(function).args]

    def call(*args: Any) -> Any:
        if len(args) != len(kinds):
            raise TypeError(f"{name} takes {len(kinds)} arguments, not {len(args)}")
        return function(*(_argument(ffi, kind, value) for kind, value in zip(kinds, args, strict=True)))

    return call


def _argument(ffi: Any, pointer_type: str | None, value: Any) -> Any:
    if pointer_type is None:
        return value
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            raise ValueError("the compiled helper takes C-contiguous arrays only")
        value = value.ctypes.data
    return ffi.cast(pointer_type, value)
