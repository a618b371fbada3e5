"""Removes named exports from a WebAssembly module (the export section only).

Envoy calls a Proxy-Wasm callback only when the module exports it, and every
call crosses into V8 (thousands of instructions). The Rust SDK exports every
callback, including ones Portcullis never implements (proxy_on_log,
proxy_on_done, proxy_on_response_body, ...), so Envoy would call them on every
request for nothing. scripts/build removes those exports; wasm-opt then drops
the code only they reached.

It also gives an export another name (--rename OLD=NEW: Portcullis's own
portcullis_on_http_call_response becomes proxy_on_http_call_response, the
SDK's being removed; see filter/src/host/abi.rs) and rewrites a marker string
of the module's data to one of the same length (--patch OLD=NEW; the string
must occur exactly once), by which the module knows it was renamed.

Usage: unexport.py IN.wasm OUT.wasm [--rename OLD=NEW]... [--patch OLD=NEW]... NAME...
Fails when a NAME or an OLD is not there (the SDK changed: look again).
"""
import sys


def read_leb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def leb(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def main():
    src, dst, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    renames, patches, names = {}, [], set()
    while args:
        arg = args.pop(0)
        if arg in ("--rename", "--patch"):
            old, _, new = args.pop(0).partition("=")
            if arg == "--rename":
                renames[old] = new
            else:
                patches.append((old.encode(), new.encode()))
        else:
            names.add(arg)
    data = open(src, "rb").read()
    for old, new in patches:
        if len(old) != len(new) or data.count(old) != 1:
            sys.exit(f"unexport: {old!r} is not in {src} exactly once, or {new!r} differs in length")
        data = data.replace(old, new)
    if data[:4] != b"\0asm":
        sys.exit(f"unexport: {src} is not a WebAssembly module")
    out = bytearray(data[:8])
    pos = 8
    removed = set()
    while pos < len(data):
        section_id = data[pos]
        size, body = read_leb(data, pos + 1)
        end = body + size
        if section_id == 7:
            count, p = read_leb(data, body)
            kept = []
            for _ in range(count):
                name_len, p2 = read_leb(data, p)
                name = data[p2:p2 + name_len].decode()
                p3 = p2 + name_len + 1  # kind byte
                _, p4 = read_leb(data, p3)
                if name in names:
                    removed.add(name)
                elif name in renames:
                    removed.add(name)
                    new = renames[name].encode()
                    kept.append(leb(len(new)) + new + data[p3 - 1:p4])
                else:
                    kept.append(data[p:p4])
                p = p4
            content = leb(len(kept)) + b"".join(kept)
            out += bytes([7]) + leb(len(content)) + content
        else:
            out += data[pos:end]
        pos = end
    missing = (names | set(renames)) - removed
    if missing:
        sys.exit(f"unexport: not exported by {src}: {', '.join(sorted(missing))}")
    open(dst, "wb").write(out)


if __name__ == "__main__":
    main()
