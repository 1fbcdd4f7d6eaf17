"""Summarizes bench/speed.sh's results: medians per size, and each figure
as a ratio to its baseline from the same run.

    python3 bench/summary.py RESULTS OUT_DIR
"""
import json, statistics, sys
from collections import defaultdict

runs = defaultdict(list)  # (label, size) -> [(wall, rss_kb, cpu)]
for line in open(sys.argv[1]):
    label, size, rest = line.split(" ", 2)
    if label == "raw":
        r = json.loads(rest)
        runs[(label, size)].append((r["wall_s"], None, r["cpu_s"], r["items"]))
    else:
        wall, rss, user, system = rest.split()
        runs[(label, size)].append((float(wall), int(rss), float(user) + float(system), None))

med = lambda xs: statistics.median(xs)
for size in sorted({s for _, s in runs}, key=int):
    plan = json.load(open(f"{sys.argv[2]}/plan-{size}-1.json"))
    records = plan["totals"]["read"]
    run = json.load(open(f"{sys.argv[2]}/run-{size}-1.json"))["totals"]
    fig = {}
    labels = ["zcat", "python", "plan", "migrate", "raw", "before-plan", "before-migrate"]
    for label in [l for l in labels if runs[(l, size)]]:
        rs = runs[(label, size)]
        n = rs[0][3] or (run["read"] if label.endswith("migrate") else records)
        fig[label] = {
            "n": n,
            "wall": med([r[0] for r in rs]),
            "cpu_us": med([r[2] / n * 1e6 for r in rs]),
            "rate": med([n / r[0] for r in rs]),
            "rss_mb": med([r[1] / 1024 for r in rs]) if rs[0][1] else None,
            "rounds": len(rs),
        }
    print(f"\n== {size} (records read: {records}; migrate wrote {run['written']}, "
          f"dead-lettered {run['dead_lettered']}; medians of {fig['plan']['rounds']} rounds)\n")
    print("| run | wall | CPU per record | records/s | peak RSS |")
    print("|---|---|---|---|---|")
    for label, f in fig.items():
        rss = f"{f['rss_mb']:.0f} MB" if f["rss_mb"] else "n/a (items pre-built)"
        print(f"| {label} | {f['wall']:.2f} s | {f['cpu_us']:.2f} us | {f['rate']:,.0f} | {rss} |")
    z, raw, p, m = fig["zcat"], fig["raw"], fig["plan"], fig["migrate"]
    goals = [
        ("plan CPU per record / zcat's", p["cpu_us"] / z["cpu_us"], "<= 3"),
        ("plan wall / zcat's", p["wall"] / z["wall"], "<= 2"),
        ("plan CPU per record / python's", p["cpu_us"] / fig["python"]["cpu_us"], "(for scale)"),
        ("migrate CPU per item / raw writer's", m["cpu_us"] / raw["cpu_us"], "<= 1.6"),
        ("migrate items/s / raw writer's", m["rate"] / raw["rate"], ">= 0.8"),
        ("plan peak RSS (MB)", p["rss_mb"], "<= 100"),
        ("migrate peak RSS (MB)", m["rss_mb"], "<= 100"),
    ]
    for what in ["plan", "migrate"]:
        if f"before-{what}" in fig:
            b, a = fig[f"before-{what}"], fig[what]
            goals.append((f"{what} CPU per record, after / before", a["cpu_us"] / b["cpu_us"], "(the change)"))
            goals.append((f"{what} wall, after / before", a["wall"] / b["wall"], "(the change)"))
    print("\n| ratio | measured | goal |\n|---|---|---|")
    for name, value, goal in goals:
        print(f"| {name} | {value:.2f} | {goal} |")
