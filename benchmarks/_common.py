"""What every benchmark script shares: the machine description, waiting for idle CPUs,
and where results go. Imported by the scripts as ``_common`` (they run from this folder:
``python benchmarks/bench_x.py`` puts it first on ``sys.path``)."""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def machine_base() -> dict:
    """Host, platform, CPU model and counts, Python and NumPy versions."""
    cpu_model = platform.processor() or ""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(),
                          re.MULTILINE)
        if match:
            cpu_model = match.group(1).strip()
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def results_path(kind: str, info: dict, tag: str = "", quick: bool = False) -> Path:
    """``results/<kind>_<host>_py<X.Y>[_<tag>][_quick].json``."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", info["hostname"]) or "host"
    py = ".".join(info["python"].split(".")[:2])
    return RESULTS / (f"{kind}_{host}_py{py}" + (f"_{tag}" if tag else "")
                      + ("_quick" if quick else "") + ".json")


def write_results(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    path = path.resolve()
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def cpu_busy_fraction(interval: float = 0.5) -> float | None:
    """Fraction of all CPUs' time spent busy over ``interval`` seconds (Linux /proc/stat);
    None where there is no /proc/stat."""

    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = snapshot()
        time.sleep(interval)
        total1, idle1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_idle(max_wait_s: float, threshold: float = 0.10, warn: bool = False
                  ) -> float | None:
    """Wait until the CPUs are idle (busy fraction < threshold); return the last reading.
    ``warn``: say so when they never got idle."""
    deadline = time.monotonic() + max_wait_s
    busy = cpu_busy_fraction()
    while busy is not None and busy >= threshold and time.monotonic() < deadline:
        busy = cpu_busy_fraction()
    if warn and busy is not None and busy >= threshold:
        print(f"# warning: the CPUs are {100 * busy:.0f} % busy with other work: timings "
              "will be low and noisy", flush=True)
    return busy
