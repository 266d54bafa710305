"""The declared build of the collector's compiled helper (cffi, API mode), run at install by `./sluice`.

cffi compiles a small C module that calls each function declared in `sluice_native.h` with the declared
signature, together with the C sources: a Python-side declaration that disagrees with the C code fails the build,
not a collector at run time. The result is an ordinary extension module beside this file
(`_sluice_native*.so`), which the collector imports; no process compiles anything at run time.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
BUILD_DIR = HERE / "_build"
MODULE = "collector.native._sluice_native"
HEADER = HERE / "sluice_native.h"
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fno-strict-aliasing"]


def sources() -> list[Path]:
    """The C files compiled into the module: every `*.c` beside this file except cffi's own output."""
    return sorted(path for path in HERE.glob("*.c") if not path.name.startswith("_"))


def source_hash() -> str:
    """A digest of the sources, headers and flags: a module built from other sources is never loaded."""
    digest = hashlib.sha256(" ".join(CFLAGS).encode())
    for path in sorted([*sources(), *HERE.glob("*.h")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def declarations() -> str:
    """The header's function prototypes, for cffi (which parses declarations, not preprocessor lines)."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    prototypes = re.findall(r"^(?:int64_t|long|void) sluice_\w+\([^;]*\);", text, flags=re.M)
    if not prototypes:
        raise RuntimeError(f"no prototypes found in {HEADER}")
    return "typedef ... flow_record;\nconst char *sluice_source_hash(void);\n" + "\n".join(prototypes)


def builder() -> FFI:
    ffi = FFI()
    ffi.cdef(declarations())
    ffi.set_source(
        MODULE,
        f'#include "sluice_native.h"\nconst char *sluice_source_hash(void) {{ return "{source_hash()}"; }}\n',
        sources=[str(path) for path in sources()],
        include_dirs=[str(HERE)],
        extra_compile_args=CFLAGS,
    )
    return ffi


def build() -> Path:
    """Compile the module in `_build/` and put it beside this file (atomically); return its path."""
    BUILD_DIR.mkdir(exist_ok=True)
    built = Path(builder().compile(tmpdir=str(BUILD_DIR), verbose=False))
    target = HERE / built.name
    partial = target.with_suffix(".partial")
    shutil.copyfile(built, partial)
    os.replace(partial, target)  # a process importing it meanwhile sees the old module or the new, never half
    return target
