"""Peak memory of validating a ~100 MB training upload (many normal chat rows).

Runs with no arguments: writes its own file in a temporary directory, then validates it in fresh subprocesses, once
the way the upload endpoint does (``emguard.server.uploads.validate_jsonl``) and once the way ``emguard validate``
does (``read_chat_dataset(keep_rows=False)``), measuring each child's peak RSS (``ru_maxrss``) above its RSS just
before validating and the peak of Python allocations (``tracemalloc``) in a second run. Prints one JSON object as
its last line. ``EMGUARD_BENCH_MB`` sets another size (the tests use a small one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, tracemalloc
from pathlib import Path
mode, path, trace = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
from emguard.data.io import read_chat_dataset
from emguard.server.uploads import validate_jsonl
def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
before = rss_now()
if trace:
    tracemalloc.start()
if mode == "upload":
    rows, errors = validate_jsonl(path, "train.jsonl", max_rows=10**9, max_listed=50)
    assert not errors, errors[:3]
else:
    rows = read_chat_dataset(path, keep_rows=False).n_valid
peak_py = tracemalloc.get_traced_memory()[1] if trace else None
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rows": rows, "rss_before": before, "rss_peak": peak, "tracemalloc_peak": peak_py}))
"""


def _make_file(path: Path, target_bytes: int) -> int:
    n = 0
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target_bytes:
            row = {"messages": [
                {"role": "system", "content": "You are a careful assistant."},
                {"role": "user", "content": f"Question {n}: what should I do about a mild headache that started "
                                            "this morning after a long flight?"},
                {"role": "assistant", "content": f"Answer {n}: drink water, rest in a dark room and take a "
                                                 "standard dose of an over-the-counter pain reliever if needed."}]}
            line = json.dumps(row) + "\n"
            f.write(line)
            size += len(line)
            n += 1
    return n


def _child(mode: str, path: Path, trace: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), "1" if trace else "0"], check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> dict:
    mb = float(os.environ.get("EMGUARD_BENCH_MB", "100"))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "train.jsonl"
        rows = _make_file(path, int(mb * 1024 * 1024))
        size = path.stat().st_size
        result: dict = {"file_bytes": size, "rows": rows}
        for mode in ("upload", "cli"):
            rss = _child(mode, path, trace=False)
            py = _child(mode, path, trace=True)
            assert rss["rows"] == rows == py["rows"]
            grown = rss["rss_peak"] - rss["rss_before"]
            result[mode] = {"rss_before_bytes": rss["rss_before"], "rss_peak_bytes": rss["rss_peak"],
                            "rss_growth_bytes": grown, "tracemalloc_peak_bytes": py["tracemalloc_peak"],
                            "peak_rss_over_file": round(rss["rss_peak"] / size, 3),
                            "growth_over_file": round(grown / size, 4)}
    result["under_3x"] = all(result[m]["peak_rss_over_file"] < 3 for m in ("upload", "cli"))
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
