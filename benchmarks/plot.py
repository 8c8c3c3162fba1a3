#!/usr/bin/env python3
"""Turns the raw output of `benchmarks/run.sh --curves` and `--soak` into PNG files.

Usage: plot.py RESULTS_DIR PLOTS_DIR   (run.sh calls it as: plot.py benchmarks/.results benchmarks/plots)

Reads RESULTS_DIR/curves/{size-N,restart-N,latency}.csv (one size-N and restart-N per store size N) and
RESULTS_DIR/soak/soak.jsonl, whichever exist, and
writes PLOTS_DIR/{engine-vs-size,restart-vs-size,latency-vs-connections,soak}.png. Each figure names the
machine line run.sh wrote beside the data, so that a picture is never read without where it was measured.
"""
import csv
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_sized(curves, prefix):
    """The rows of every PREFIX-N.csv, smallest N first."""
    rows = []
    for name in os.listdir(curves):
        if name.startswith(prefix + "-") and name.endswith(".csv"):
            rows.extend(read_csv(os.path.join(curves, name)))
    return sorted(rows, key=lambda r: int(r["contacts"]))


def machine_note(directory):
    path = os.path.join(directory, "machine.txt")
    if not os.path.exists(path):
        return ""
    with open(path) as handle:
        # One line per run that wrote into the directory; the figure names them all.
        return "  /  ".join(line.strip() for line in handle if line.strip())


def millions(contacts):
    return f"{contacts / 1e6:g}M" if contacts else "0"


def save(figure, plots, name, note):
    if note:
        figure.text(0.01, 0.005, note, fontsize=6, color="gray", wrap=True)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    path = os.path.join(plots, name)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {path}")


def plot_sizes(curves, plots):
    rows = read_sized(curves, "size")
    sizes = [int(r["contacts"]) for r in rows]
    positions = range(len(sizes))
    labels = [millions(s) for s in sizes]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    rates = [float(r["engine_per_second"]) / 1000 for r in rows]
    left.plot(positions, rates, marker="o")
    for x, y in zip(positions, rates):
        left.annotate(f"{y:,.0f}k", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    left.set_title("engine identify, durable, on a store of N contacts", fontsize=10)
    left.set_ylabel("thousand identify / s")
    left.set_ylim(bottom=0, top=max(rates) * 1.2 if rates else 1)
    # The first start after populate, and a start after kill -9, which builds the index anew (no saved image).
    sized = [(x, r) for x, r in zip(positions, rows) if int(r["contacts"]) > 0]
    for shift, column, label, color in ((-0.2, "bytes_per_contact", "first start", "tab:orange"),
                                        (0.2, "rebuilt_bytes_per_contact", "after kill -9 (index rebuilt)", "tab:red")):
        bars = [(x + shift, int(r[column])) for x, r in sized if r.get(column)]
        right.bar([x for x, _ in bars], [b for _, b in bars], width=0.4, color=color, label=label)
        for x, b in bars:
            right.annotate(f"{b} B", (x, b), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    right.legend(fontsize=8, loc="lower right")
    right.set_title("memory per contact: server RSS over an empty one's", fontsize=10)
    right.set_ylabel("bytes per contact")
    for axis in (left, right):
        axis.set_xticks(list(positions), labels)
        axis.set_xlabel("contacts in the store")
        axis.grid(axis="y", alpha=0.3)
    save(figure, plots, "engine-vs-size.png", machine_note(curves))


def plot_restarts(curves, plots):
    rows = read_sized(curves, "restart")
    sizes = sorted({int(r["contacts"]) for r in rows})
    figure, axis = plt.subplots(figsize=(7, 4))
    styles = {"clean": ("after a clean stop (SIGTERM)", "o"), "kill9": ("after a write and kill -9 (index rebuilt)", "s")}
    for kind, (label, marker) in styles.items():
        points = []
        for size in sizes:
            values = [int(r["milliseconds"]) / 1000 for r in rows if r["kind"] == kind and int(r["contacts"]) == size]
            if values:
                points.append((size / 1e6, statistics.median(values)))
        if points:
            axis.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=label)
            x, y = points[-1]
            axis.annotate(f"{y:.2f} s", (x, y), textcoords="offset points", xytext=(-10, 6), ha="right", fontsize=8)
    axis.set_title("restart: process start to /healthz 200 (median)")
    axis.set_xlabel("million contacts in the store")
    axis.set_ylabel("seconds")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend()
    save(figure, plots, "restart-vs-size.png", machine_note(curves))


def plot_latency(curves, plots):
    rows = read_csv(os.path.join(curves, "latency.csv"))
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, protocol, title in ((axes[0], "tcp", "line protocol (TCP), 1 in flight"),
                                  (axes[1], "http", "HTTP/1.1 keep-alive, 1 in flight")):
        mine = sorted((r for r in rows if r["protocol"] == protocol), key=lambda r: int(r["connections"]))
        connections = [int(r["connections"]) for r in mine]
        for column, label, marker in (("p50_us", "p50", "o"), ("p99_us", "p99", "s")):
            axis.plot(connections, [float(r[column]) / 1000 for r in mine], marker=marker, label=label)
        for r in mine:
            axis.annotate(f"{float(r['throughput']) / 1000:,.1f}k/s", (int(r["connections"]), float(r["p50_us"]) / 1000),
                          textcoords="offset points", xytext=(0, -12), ha="center", fontsize=7, color="gray")
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks(connections, [str(c) for c in connections])
        axis.set_title(f"{title}, durable")
        axis.set_xlabel("concurrent connections (throughput in gray)")
        axis.grid(alpha=0.3, which="both")
        axis.legend()
    axes[0].set_ylabel("latency, ms (log)")
    save(figure, plots, "latency-vs-connections.png", machine_note(curves))


def plot_soak(soak, plots):
    with open(os.path.join(soak, "soak.jsonl")) as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    points = [line for line in lines if "summary" not in line]
    if not points:
        return
    minutes = [p["t"] / 60 for p in points]
    figure, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    panels = (
        (axes[0][0], [p["rssBytes"] / 2**20 for p in points], "server RSS, MiB (gray: warm-up)"),
        (axes[0][1], [p["fds"] for p in points], "server open file descriptors"),
        (axes[1][0], [p["perSecond"] for p in points], "throughput, requests/s (10 s points)"),
        (axes[1][1], [p["p99Micros"] / 1000 for p in points], "p99 latency, ms (10 s points)"),
    )
    # The warm-up that the RSS verdict leaves out (run.sh: the first tenth, at least a minute in a long run).
    warm = max(1, len(points) // 10)
    if len(points) >= 60:
        warm = max(warm, 6)
    for axis, values, title in panels:
        axis.axvspan(0, minutes[min(warm, len(points)) - 1], color="gray", alpha=0.12, linewidth=0)
        axis.plot(minutes, values, linewidth=1)
        axis.set_title(title, fontsize=10)
        axis.set_ylim(bottom=0, top=max(values) * 1.15 if max(values) > 0 else 1)
        axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("minutes")
    summary = next((line["summary"] for line in lines if "summary" in line), None)
    if summary:
        figure.suptitle(
            f"soak: {summary['requests']:,} requests at {summary['rate']:,.0f}/s, "
            f"{summary['acknowledgedChanges']:,} acknowledged changes, lost {summary['lost']}, "
            f"errors {summary['errors']}, stream gaps {summary['streamGaps']}", fontsize=10)
    save(figure, plots, "soak.png", machine_note(soak))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py RESULTS_DIR PLOTS_DIR")
    results, plots = sys.argv[1], sys.argv[2]
    os.makedirs(plots, exist_ok=True)
    curves = os.path.join(results, "curves")
    drawn = 0
    present = os.listdir(curves) if os.path.isdir(curves) else []
    for prefix, draw in (("size-", plot_sizes), ("restart-", plot_restarts), ("latency.csv", plot_latency)):
        if any(name.startswith(prefix) for name in present):
            draw(curves, plots)
            drawn += 1
    soak = os.path.join(results, "soak")
    if os.path.exists(os.path.join(soak, "soak.jsonl")):
        plot_soak(soak, plots)
        drawn += 1
    if not drawn:
        sys.exit(f"nothing to plot in {results}: run benchmarks/run.sh --curves or --soak DURATION first")


if __name__ == "__main__":
    main()
