"""Run a snippet in a fresh Python process under a memory cap and report its peak memory.

The peak is the process's own high-water mark (``VmHWM``): ``resource``'s ``ru_maxrss`` of an
exec'd child starts from the parent's peak on Linux, which under pytest is large. The cap
(``RLIMIT_AS``, set with ``resource`` before the snippet runs) turns an allocation the code
should never have attempted into a ``MemoryError`` in the child instead of swapping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_PRELUDE = """
import resource
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
"""
_REPORT = """
with open("/proc/self/status") as _status:
    print("PEAK_KIB", [l.split()[1] for l in _status if l.startswith("VmHWM")][0])
"""


def peak_kib(code: str, cap_bytes: int = 2**31, timeout: float = 120) -> int:
    """Run ``code`` (dedented) capped at ``cap_bytes`` of address space; return its peak RSS
    in KiB. The child's failure (an exception, the cap hit) fails with its stderr."""
    source = _PRELUDE.format(cap=cap_bytes) + textwrap.dedent(code) + _REPORT
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split("PEAK_KIB")[-1].split()[0].strip("'[]\""))
