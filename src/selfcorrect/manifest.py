"""What a run records about itself: versions, hardware, data hashes."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from functools import lru_cache
from pathlib import Path

from selfcorrect.data import data_dir


@lru_cache(maxsize=1)
def data_hashes() -> dict[str, str]:
    """sha256 of every shipped data file (decompressed bytes are what upstream publishes, but
    the stored bytes are what we read, so those are hashed)."""
    out = {}
    for p in sorted(data_dir().rglob("*")):
        if p.is_file() and p.suffix in (".gz", ".tsv", ".csv"):
            out[str(p.relative_to(data_dir()))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def hardware() -> dict:
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
