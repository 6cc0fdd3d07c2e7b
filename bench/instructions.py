"""Instructions per operation of bench cases, counted by callgrind: repeatable on a noisy machine.

Wall-clock medians on a shared 2-core machine move by 30% between runs; the number of
instructions a case executes does not (for the same interpreter, code and input). This
counts them under ``valgrind --tool=callgrind`` for each case at size N and 2N, and
reports ``(Ir(2N) - Ir(N)) / N``: the cost of one operation, start-up cancelled out.

Compare two checkouts (each with its own ``uv sync``-ed venv), or runtimes of one:

    python bench/instructions.py --python OLD/.venv/bin/python --python .venv/bin/python \\
        yield-storm:single-threaded:20 spawn-join:work-stealing-1:5000

Each case is ``WORKLOAD:RUNTIME:N``, as ``anyrt bench`` names them (``anyrt bench --help``).
Threads are serialised under valgrind: counts for threaded runtimes include their
synchronisation, not their parallelism. Needs valgrind (Debian: ``apt install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor


def instructions(python: str, workload: str, runtime: str, size: int) -> int:
    """Instructions (callgrind's Ir) of one child run of the case at ``size``."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [python, "-P", "-m", "anyrt._bench", "--child", workload, runtime, str(size)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),  # -P and a neutral directory: the venv's anyrt is used
        env={**os.environ, "PYTHONHASHSEED": "0"},
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or found is None:
        raise SystemExit(f"{workload} on {runtime} with {python} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help="an interpreter (repeatable)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("cases", nargs="+", metavar="WORKLOAD:RUNTIME:N")
    args = parser.parse_args()
    pythons = args.python or [os.path.join(".venv", "bin", "python")]
    cases = [(w, r, int(n)) for w, r, n in (case.split(":") for case in args.cases)]
    runs = [(p, w, r, n * k) for w, r, n in cases for p in pythons for k in (1, 2)]
    with ThreadPoolExecutor(args.jobs) as pool:
        counted = dict(zip(runs, pool.map(lambda run: instructions(*run), runs), strict=True))
    header = "".join(f"  {f'Ir/op [{i}]':>14}" for i in range(len(pythons)))
    ratio = "  last/first" if len(pythons) > 1 else ""
    print(f"{'workload':18} {'runtime':20}{header}{ratio}")
    for workload, runtime, n in cases:
        per = [
            (counted[p, workload, runtime, 2 * n] - counted[p, workload, runtime, n]) / n
            for p in pythons
        ]
        cells = "".join(f"  {value:14,.0f}" for value in per)
        tail = f"  {per[-1] / per[0]:10.2f}" if len(pythons) > 1 else ""
        print(f"{workload:18} {runtime:20}{cells}{tail}")
    for index, python in enumerate(pythons):
        print(f"[{index}] {python}")


if __name__ == "__main__":
    main()
