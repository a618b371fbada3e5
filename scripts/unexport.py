"""Removes named exports from a WebAssembly module (the export section only).

Envoy calls a Proxy-Wasm callback only when the module exports it, and every
call crosses into V8 (thousands of instructions). The Rust SDK exports every
callback, including ones Portcullis never implements (proxy_on_log,
proxy_on_done, proxy_on_response_body, ...), so Envoy would call them on every
request for nothing. scripts/build removes those exports; wasm-opt then drops
the code only they reached.

Usage: unexport.py IN.wasm OUT.wasm NAME [NAME ...]
Fails when a NAME is not exported (the SDK changed: look again).
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
    src, dst, names = sys.argv[1], sys.argv[2], set(sys.argv[3:])
    data = open(src, "rb").read()
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
                else:
                    kept.append(data[p:p4])
                p = p4
            content = leb(len(kept)) + b"".join(kept)
            out += bytes([7]) + leb(len(content)) + content
        else:
            out += data[pos:end]
        pos = end
    missing = names - removed
    if missing:
        sys.exit(f"unexport: not exported by {src}: {', '.join(sorted(missing))}")
    open(dst, "wb").write(out)


if __name__ == "__main__":
    main()
