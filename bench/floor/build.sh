#!/usr/bin/env bash
# Builds the floor module and its one-call variants into OUT_DIR (default
# target/bench/floor): floor.wasm, floor_callbacks.wasm, floor_header.wasm,
# floor_property.wasm, floor_route_name.wasm, floor_time.wasm.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${1:-$TARGET_DIR/bench/floor}"
mkdir -p "$OUT"
for variant in floor callbacks header property route_name time; do
  features=()
  [[ "$variant" != floor ]] && features=(--features "$variant")
  cargo build --quiet --release --target wasm32-wasip1 \
    --manifest-path "$HERE/Cargo.toml" --target-dir "$TARGET_DIR/floor" "${features[@]}"
  name="floor_$variant"; [[ "$variant" == floor ]] && name=floor
  cp "$TARGET_DIR/floor/wasm32-wasip1/release/portcullis_floor.wasm" "$OUT/$name.wasm"
done
