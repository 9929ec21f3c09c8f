"""`make bench` / `make bench-smoke`: run every benchmark in turn, then print one summary table of every
figure, baseline and ratio (read back from the JSON each script wrote to bench/results/)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench.common import PYTHON, REPO, RESULTS, Row, machine, render_table

BENCHMARKS = ["launch_fanout", "deadline_storm", "reminder_storm", "review_load", "audit", "scale", "desk"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the scripts still work")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    args = parser.parse_args()
    names = [name for name in args.only.split(",") if name]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")
    suffix = "-smoke" if args.smoke else ""
    failed: list[str] = []
    durations: dict[str, float] = {}
    started = time.monotonic()
    for name in names:
        (RESULTS / f"{name}{suffix}.json").unlink(missing_ok=True)
    if args.smoke:
        # At smoke sizes the figures mean nothing and start-up is most of each script: run them side by
        # side to stay under a minute.
        running = {
            name: subprocess.Popen(
                [PYTHON, "-m", f"bench.{name}", "--smoke"],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name in names
        }
        for name, process in running.items():
            output, _ = process.communicate()
            print(f"\n### bench.{name} --smoke\n{output}", flush=True)
            if process.returncode != 0:
                failed.append(name)
    for name in names if not args.smoke else []:
        print(f"\n### bench.{name}", flush=True)
        began = time.monotonic()
        if subprocess.run([PYTHON, "-m", f"bench.{name}"], cwd=REPO, check=False).returncode != 0:
            failed.append(name)
        durations[name] = time.monotonic() - began
    rows: list[Row] = []
    for name in names:
        path = RESULTS / f"{name}{suffix}.json"
        if path.exists():
            rows += [Row(**row) for row in json.loads(path.read_text(encoding="utf-8"))["rows"]]
    where = machine()
    print(render_table(rows, title=f"summary{' (smoke sizes)' if args.smoke else ''}"))
    timings = [f"{name} {seconds:.0f} s" for name, seconds in durations.items()]
    timings.append(f"total {time.monotonic() - started:.0f} s")
    print(
        f"\nmachine: {where['cpu']}, {where['cores']} cores, {where['memory_gib']} GiB, "
        f"Python {where['python']}; " + ", ".join(timings)
    )
    missed = [row for row in rows if row.met is False]
    if missed:
        print(f"{len(missed)} figure(s) miss their target (marked NO above)")
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the output above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
