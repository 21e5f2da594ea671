r"""Process isolation: a child process run under a memory watchdog and a time limit."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from stair_pyg.profiling.measure import process_memory_bytes

#: How often :func:`run_watched` reads the child's resident memory.
MEMORY_POLL_S = 0.2
GIB = 2**30


def run_watched(argv: Sequence[str], memory_limit_bytes: Optional[float] = None,
                poll_s: float = MEMORY_POLL_S, timeout: Optional[float] = None
                ) -> Dict[str, Any]:
    r"""Runs :obj:`argv` in its own process group, reading the child's resident memory every
    :obj:`poll_s` seconds, and kills the group (``SIGKILL``) above :obj:`memory_limit_bytes`,
    after :obj:`timeout` seconds, or when this process is interrupted while waiting.

    Returns ``returncode``, ``stdout``, ``stderr``, ``seconds``, ``peak_seen_bytes`` (the
    largest reading), ``killed_at_bytes`` (the reading that triggered a memory kill, else
    :obj:`None`) and ``timed_out``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    peak = killed_at = None
    timed_out = False

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover
            pass

    try:
        while True:
            try:  # retrying communicate() after its timeout loses no output (subprocess docs)
                stdout, stderr = proc.communicate(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            rss = process_memory_bytes(proc.pid)
            peak = peak if rss is None else max(peak or 0, rss)
            timed_out = timeout is not None and time.perf_counter() - t0 > timeout
            over = memory_limit_bytes is not None and rss is not None and rss > memory_limit_bytes
            if timed_out or over:
                killed_at = rss if over and not timed_out else None
                kill()
                stdout, stderr = proc.communicate()
                break
    finally:
        if proc.poll() is None:  # interrupted: leave no child behind
            kill()
            proc.wait()
    return {"returncode": proc.returncode, "stdout": stdout or "", "stderr": stderr or "",
            "seconds": time.perf_counter() - t0, "peak_seen_bytes": peak,
            "killed_at_bytes": killed_at, "timed_out": timed_out}


_ALLOCATION_FAILURES = ("MemoryError", "can't allocate memory", "not enough memory",
                        "Cannot allocate memory")


def worker_record(name: str, out: Dict[str, Any], path: Path,
                  memory_limit_bytes: Optional[float] = None) -> Dict[str, Any]:
    r"""The record of one worker from :func:`run_watched`'s :obj:`out` and the JSON it wrote to
    :obj:`path` (if any). Memory failures carry ``memory_failure`` (``"limit"``: killed by the
    watchdog; ``"oom"``: a ``SIGKILL`` it did not send, the kernel's out-of-memory killer;
    ``"allocation"``: an allocation raised) and ``memory_exceeded_bytes``."""
    seen, secs = out["peak_seen_bytes"], out["seconds"]
    if out["killed_at_bytes"] is not None:
        return {"model": name, "memory_failure": "limit",
                "error": f"exceeded the memory limit of {memory_limit_bytes / GIB:.3g} GiB "
                         f"(killed at {out['killed_at_bytes'] / GIB:.3g} GiB after {secs:.1f} s)",
                "memory_exceeded_bytes": out["killed_at_bytes"],
                "memory_limit_bytes": memory_limit_bytes}
    if out["returncode"] == -signal.SIGKILL and not out.get("timed_out"):
        return {"model": name, "memory_failure": "oom", "memory_exceeded_bytes": seen,
                "error": "killed by SIGKILL that the memory watchdog did not send: most likely "
                         "the kernel's out-of-memory killer ("
                         + (f"{seen / GIB:.3g} GiB resident when last seen, " if seen else "")
                         + f"after {secs:.1f} s)"}
    rec = json.loads(path.read_text()) if path.exists() else {
        "model": name, "error": f"worker exited {out['returncode']}: "
        + (out["stderr"] or out["stdout"])[-2000:]}
    if "error" in rec and any(s in rec["error"] for s in _ALLOCATION_FAILURES):
        rec.update(memory_failure="allocation", memory_exceeded_bytes=seen)
    if seen is not None:
        rec["watchdog_peak_bytes"] = seen
    return rec
