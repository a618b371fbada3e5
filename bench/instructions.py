"""Instructions per request on Envoy's worker thread, counted by callgrind.

Wall-clock ratios on a shared 2-core machine move with whatever else runs;
instruction counts do not: the same module, configuration and requests give the
same count. scripts/bench-instructions starts the benchmark's Envoy (the same
envoy.json, listeners and fixtures as scripts/bench) under
`valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes`, and this
script, for each variant, sends warm-up requests, then switches instrumentation
on, sends N requests over one keep-alive connection, dumps, and reads the
worker thread's total. What the counts leave out: the kernel (sockets), and the
client. What they include: Envoy's C++, V8's generated code for the module, and
for External, the auth service listener (in the same worker, for both variants).

Envoy under valgrind holds only a few Wasm VMs (each V8 memory reserves its
guard regions in valgrind's address space), so scripts/bench-instructions runs
the variants in passes, one Envoy each with only their listeners:

Usage: instructions.py measure WORKDIR VALGRIND_PID N VARIANT...  (adds to WORKDIR/instructions.json)
       instructions.py report WORKDIR N DOC|-                      (the table, from instructions.json)
"""
import json
import glob
import http.client
import os
import re
import subprocess
import sys
import time

BEGIN = "<!-- instructions:begin (written by scripts/bench-instructions) -->"
END = "<!-- instructions:end -->"

VARIANTS = [
    # (name, listener, how requests authenticate)
    ("plain", "plain", None),
    # The floor with each variant's request: no credentials, the token, the cookie.
    ("floor", "floor", None),
    ("floor_token", "floor", "token"),
    ("floor_cookie", "floor", "cookie"),
    ("native_jwt_cache", "native_jwt_cache", "token"),
    ("pc_jwt", "pc_jwt", "token"),
    ("native_jwt_distinct", "native_jwt", "tokens"),
    ("pc_jwt_distinct", "pc_jwt", "tokens"),
    ("pc_jwt_templates", "pc_jwt_templates", "token"),
    ("pc_jwt_authz", "pc_jwt_authz", "token"),
    ("native_ext_authz", "native_ext_authz", None),
    ("pc_external", "pc_external", None),
    ("native_oauth2", "native_oauth2", "cookie_oauth2"),
    ("pc_oidc", "pc_oidc", "cookie"),
    # The floor module with one more thing each (bench/floor): what it costs.
    ("floor_callbacks", "floor_callbacks", None),
    ("floor_header", "floor_header", "token"),
    ("floor_property", "floor_property", None),
    ("floor_route_name", "floor_route_name", None),
    ("floor_time", "floor_time", None),
]
# Each Portcullis variant's counterpart among Envoy's own filters.
NATIVE = {
    "pc_jwt": "native_jwt_cache",
    "pc_jwt_distinct": "native_jwt_distinct",
    "pc_external": "native_ext_authz",
    "pc_oidc": "native_oauth2",
}
# The floor each Portcullis variant compares with: the same request.
FLOOR = {
    "pc_jwt": "floor_token",
    "pc_jwt_distinct": "floor_token",
    "pc_jwt_templates": "floor_token",
    "pc_jwt_authz": "floor_token",
    "pc_external": "floor",
    "pc_oidc": "floor_cookie",
}
RATIOS = [
    ("JWT one token vs the floor (goal 0.9)", "pc_jwt", "floor_token"),
    ("JWT one token vs jwt_authn with cache", "pc_jwt", "native_jwt_cache"),
    ("JWT distinct tokens vs jwt_authn without cache (goal 0.95)", "pc_jwt_distinct", "native_jwt_distinct"),
    ("JWT + Authorization (5 rules) vs JWT alone", "pc_jwt_authz", "pc_jwt"),
    ("External vs ext_authz (goal 0.9)", "pc_external", "native_ext_authz"),
    ("OIDC session vs the floor (goal 0.85)", "pc_oidc", "floor_cookie"),
    ("OIDC session vs Envoy's oauth2", "pc_oidc", "native_oauth2"),
]


def main():
    if sys.argv[1] == "measure":
        measure(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:])
    else:
        report(sys.argv[2], int(sys.argv[3]), sys.argv[4])


def measure(work, pid, n, names):
    ports = dict(line.split() for line in open(os.path.join(work, "listeners.txt")) if line.strip())
    token = open(os.path.join(work, "token.txt")).read().split()[0]
    tokens = open(os.path.join(work, "tokens.txt")).read().split()
    cookie = open(os.path.join(work, "cookie.txt")).read().splitlines()[0]
    cookie_oauth2 = open(os.path.join(work, "cookie_oauth2.txt")).read().splitlines()[0]
    out_prefix = os.path.join(work, "callgrind.out")
    next_token = [0]

    def send(listener, auth, count):
        conn = http.client.HTTPConnection("127.0.0.1", int(ports[listener]), timeout=60)
        bad = 0
        for _ in range(count):
            headers = {}
            if auth == "token":
                headers["Authorization"] = "Bearer " + token
            elif auth == "tokens":
                headers["Authorization"] = "Bearer " + tokens[next_token[0] % len(tokens)]
                next_token[0] += 1
            elif auth == "cookie":
                headers["Cookie"] = cookie
            elif auth == "cookie_oauth2":
                headers["Cookie"] = cookie_oauth2
            conn.request("GET", "/", headers=headers)
            response = conn.getresponse()
            response.read()
            bad += response.status != 200
        conn.close()
        if bad:
            sys.exit(f"bench-instructions: {listener}: {bad} of {count} requests were not answered 200")

    def control(*args):
        subprocess.run(["callgrind_control", *args, pid], check=True, capture_output=True)

    results_path = os.path.join(work, "instructions.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    for name, listener, auth in VARIANTS:
        if name not in names:
            continue
        send(listener, auth, 1000)  # warm-up: V8 tiers hot code up, caches fill
        control("-i", "on")
        control("-z")
        send(listener, auth, n)
        control("-d", name)
        control("-i", "off")
        total = None
        for _ in range(50):
            for path in glob.glob(out_prefix + ".*"):
                text = open(path, errors="replace").read()
                if f"Trigger: dump {name}\n" in text and re.search(r"^thread: (\d+)$", text, re.M):
                    counted = int(re.search(r"^totals: (\d+)", text, re.M).group(1))
                    total = max(total or 0, counted)  # the worker is the busy thread
            if total is not None:
                break
            time.sleep(0.2)
        if total is None:
            sys.exit(f"bench-instructions: no callgrind dump for {name}")
        results[name] = total / n
        print(f"{name:26s} {results[name]:10.0f} instructions/request")
        json.dump(results, open(results_path, "w"))


def report(work, n, doc):
    results = json.load(open(os.path.join(work, "instructions.json")))

    lines = [BEGIN, "| variant | instructions per request | vs plain | vs its floor | as throughput: vs floor / vs native |",
             "|---|---:|---:|---:|---:|"]
    for name, _, _ in VARIANTS:
        if name not in results:
            continue
        native = NATIVE.get(name)
        floor = FLOOR.get(name, "floor_token" if name in ("floor_header",) else "floor")
        as_rate = "-"
        if name.startswith("pc_") and floor in results and native in results:
            as_rate = f"{results[floor] / results[name]:.2f}x / {results[native] / results[name]:.2f}x"
        over_floor = "-" if name.startswith(("plain", "native", "floor")) and name not in ("floor_callbacks", "floor_header", "floor_property", "floor_route_name", "floor_time") else f"{results[name] - results[floor]:+,.0f}"
        lines.append(f"| {name} | {results[name]:,.0f} | {results[name] - results['plain']:+,.0f} | {over_floor} | {as_rate} |")
    lines += ["", "| goal (as throughput, inverse of instructions) | ratio |", "|---|---:|"]
    for label, ours, theirs in RATIOS:
        if ours not in results or theirs not in results:
            continue
        ratio = results[theirs] / results[ours]
        lines.append(f"| {label} | {ratio:.2f}x |")
        print(f"{label}: {ratio:.2f}x")
    lines += ["", f"{n} requests per variant after 1000 warm-up requests, one keep-alive connection; "
              f"Envoy `--concurrency 1`; {time.strftime('%Y-%m-%d', time.gmtime())}.", END]
    block = "\n".join(lines)
    if doc == "-":
        print(block)
        return
    text = open(doc).read() if os.path.exists(doc) else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(doc, "w").write(text)
    print(f"bench-instructions: wrote {doc}")


if __name__ == "__main__":
    main()
