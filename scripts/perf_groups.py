#!/usr/bin/env python3
"""Groups a whole-machine perf profile of the rport gateway benchmark by where the
samples fell (docs/BENCHMARKS.md). Usage:
  perf report -i /tmp/perf.data --no-children --sort comm,dso,sym --stdio -g none \
    | python3 scripts/perf_groups.py
"""
import collections
import re
import sys

groups = collections.Counter()
top = []
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
    if not m:
        continue
    pct, comm, _dso, kind, sym = m.groups()
    pct = float(pct)
    if comm == "swapper":
        g = "idle"
    elif sym.startswith("bpf_prog_"):
        g = "XDP program (JIT code)"
    elif comm.startswith("rport-gw") and kind == ".":
        g = "rport AF_XDP worker, userspace"
    elif comm.startswith("rport-gw"):
        g = "rport AF_XDP worker, kernel"
    elif comm in ("rport", "rport-control"):
        g = "rport main and control threads"
    elif comm == "bench":
        g = "load generator and responder (with softirq work run in their context)"
    else:
        g = "other"
    groups[g] += pct
    if (sym.startswith("bpf_prog_") or comm.startswith("rport-gw")) and pct >= 0.2:
        top.append((pct, comm, sym))
for g, v in groups.most_common():
    print(f"| {v:.1f}% | {g} |")
print()
for pct, comm, sym in top:
    print(f"{pct:5.2f}% {comm:18} {sym}")
