"""The persistent XLA compilation cache shared by every command (train, evaluate, inference).

Compiling the train step takes most of a restart on a small model; with the cache a resumed run
or a second command loads the compiled program from disk instead. Where it lives, first match:
the environment variable JAX_COMPILATION_CACHE_DIR (JAX's own), SIGNLANG_JAX_CACHE_DIR, else
~/.cache/signlang_jax/xla (XDG_CACHE_HOME is honoured). SIGNLANG_JAX_CACHE_DIR=off disables it.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

# Programs that compile faster than this are not worth a disk round trip (JAX's default is 1 s).
MIN_COMPILE_SECONDS = 0.5


def cache_directory() -> Path | None:
    """Where compiled programs are cached, or None when disabled (see the module docstring)."""
    for name in ("JAX_COMPILATION_CACHE_DIR", "SIGNLANG_JAX_CACHE_DIR"):
        value = os.environ.get(name, "")
        if value.lower() == "off":
            return None
        if value:
            return Path(value).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "signlang_jax" / "xla"


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at `cache_directory()`; return it."""
    directory = cache_directory()
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return directory
