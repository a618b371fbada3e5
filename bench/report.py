"""Reads scripts/bench's wrk outputs and writes the results table.

Usage: report.py RESULTS_DIR DOC_PATH  (metadata in RESULTS_DIR/meta.json).
Each wrk run is RESULTS_DIR/<variant>.<round>.txt. Prints the table and replaces
the block between the bench markers in DOC_PATH (created when missing)."""
import json
import os
import re
import statistics
import sys

BEGIN = "<!-- bench:begin (written by scripts/bench) -->"
# Each Portcullis variant's counterpart among Envoy's own filters.
NATIVE = {
    "pc_jwt": "native_jwt_cache",
    "pc_jwt_distinct": "native_jwt_distinct",
    "pc_external": "native_ext_authz",
    "pc_oidc": "native_oauth2",
}
# The floor each Portcullis variant compares with: the same request (the floor
# module with no credentials, the token, or the session cookie).
FLOOR = {
    "pc_jwt": "floor_token",
    "pc_jwt_distinct": "floor_token",
    "pc_external": "floor",
    "pc_oidc": "floor_cookie",
}
# (label, ours, theirs, target): the goals of docs/performance.md.
GOALS = [
    ("JWT one token vs the floor", "pc_jwt", "floor_token", 0.9),
    ("JWT distinct tokens vs jwt_authn without cache", "pc_jwt_distinct", "native_jwt_distinct", 0.95),
    ("External vs ext_authz", "pc_external", "native_ext_authz", 0.9),
    ("OIDC session vs the floor", "pc_oidc", "floor_cookie", 0.85),
]
END = "<!-- bench:end -->"


def seconds(value, unit):
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def parse(path):
    text = open(path).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        lat[pct] = seconds(value, unit)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": lat.get("50"),
        "p99": lat.get("99"),
        "bad": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    results, doc = sys.argv[1], sys.argv[2]
    meta = json.load(open(os.path.join(results, "meta.json")))
    runs = {}
    for name in sorted(os.listdir(results)):
        m = re.match(r"(.+)\.(\d+)\.txt$", name)
        if m:
            runs.setdefault(m.group(1), []).append(parse(os.path.join(results, name)))
    summary = {}
    for variant, rs in runs.items():
        summary[variant] = {
            "rps": med([r["rps"] for r in rs]),
            "all": [r["rps"] for r in rs],
            "p50": med([r["p50"] for r in rs]),
            "p99": med([r["p99"] for r in rs]),
            "bad": sum(r["bad"] for r in rs),
        }

    def rps(v):
        return summary.get(v, {}).get("rps") or 0.0

    def ratio(a, b):
        return rps(a) / rps(b) if rps(b) else 0.0

    plain = summary.get("plain", {})

    def vs(variant, other):
        return f"{ratio(variant, other):.2f}x" if variant != other and rps(other) else "-"

    lines = []
    lines.append("| variant | req/s (median) | rounds | vs floor | vs native | p50 | p99 | added p50 / p99 vs plain | non-2xx |")
    lines.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for variant in meta["variants"]:
        s = summary.get(variant)
        if not s:
            continue
        def ms(x):
            return f"{x * 1000:.2f} ms" if x is not None else "-"
        added = "-"
        if variant != "plain" and s["p50"] is not None and plain.get("p50") is not None:
            added = f"{(s['p50'] - plain['p50']) * 1000:+.2f} / {(s['p99'] - plain['p99']) * 1000:+.2f} ms"
        rounds = " ".join(f"{x / 1000:.1f}k" for x in s["all"])
        native = NATIVE.get(variant)
        lines.append(
            f"| {variant} | {s['rps']:.0f} | {rounds} | {vs(variant, FLOOR[variant]) if variant in FLOOR else '-'} | "
            f"{vs(variant, native) if native else '-'} | {ms(s['p50'])} | {ms(s['p99'])} | {added} | {s['bad']} |"
        )
    goals = GOALS
    lines.append("")
    lines.append("| goal | ratio | target | met |")
    lines.append("|---|---:|---:|---|")
    for label, a, b, target in goals:
        if a in summary and b in summary:
            r = ratio(a, b)
            lines.append(f"| {label} | {r:.2f}x | ≥ {target:.2f}x | {'yes' if r >= target else 'no'} |")
    size = meta.get("module_bytes", 0)
    lines.append(f"| module size after wasm-opt | {size / 1e6:.3f} MB ({size} bytes) | ≤ 1 MB | {'yes' if size <= 1_000_000 else 'no'} |")
    lines.append("")
    lines.append(
        f"Machine: {meta['nproc']} cores, {meta['cpu']}; {meta['date']}; Envoy {meta['envoy']}; "
        f"`wrk {meta['wrk_args']}`, {meta['rounds']} rounds × {meta['duration']} s, variants alternated "
        f"within each round; Envoy `--concurrency 1`. Distinct-token runs rotate {meta['tokens']} RS256 tokens."
    )
    mem = meta.get("memory", {})
    if mem:
        lines.append(
            f"Memory after the run (admin `/memory`, one worker, 3 Portcullis VMs and 6 floor VMs): allocated "
            f"{mem.get('allocated', 0) / 2**20:.1f} MiB, heap {mem.get('heap_size', 0) / 2**20:.1f} MiB; "
            f"process RSS {mem.get('rss_kib', 0) / 1024:.1f} MiB (V8 Wasm memories are outside the heap: "
            f"RSS is the figure that includes them)."
        )
    table = "\n".join(lines)
    print(table)
    block = f"{BEGIN}\n{table}\n{END}"
    text = open(doc).read() if os.path.exists(doc) else "# Performance\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(doc, "w").write(text)


if __name__ == "__main__":
    main()
