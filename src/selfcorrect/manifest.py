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


def reset_peak_rss() -> str:
    """Start a new peak resident-memory count for this process: "run" where Linux lets the
    peak be reset (/proc/self/clear_refs), so a run's peak is its own even after a larger
    part in the same process; else "process" (the peak since the process started)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _vm_hwm_kib()
        return "run"
    except (OSError, ValueError, StopIteration):
        return "process"


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def peak_rss_mb(scope: str = "process") -> float:
    """Peak resident memory in MB: since reset_peak_rss() for scope "run", else since the
    process started."""
    import resource

    if scope == "run":
        try:
            return round(_vm_hwm_kib() / 1024, 1)
        except (OSError, ValueError, StopIteration):
            pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot; /proc only), so a reused pid is not
    mistaken for the run's own process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_info() -> dict:
    """What identifies this process later: pid, host, start time."""
    return {"pid": os.getpid(), "host": platform.node(), "start": _start_ticks(os.getpid())}


def process_gone(info: dict | None) -> bool:
    """True when the process a run recorded has certainly ended (same host, and its pid is
    free or belongs to a process started at another time); False when alive or unknown."""
    if not info or info.get("host") != platform.node() or not info.get("pid"):
        return False
    pid = int(info["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    start = _start_ticks(pid)
    return start is not None and info.get("start") is not None and start != info["start"]
