# The demo's upstream and JWK Set server: the `testbed` binary (crate
# portcullis-testbed), as docker-compose.yaml at the repository root runs it.
# Build context: the repository root.
#   docker build -f docker/testbed.Dockerfile -t portcullis-testbed .
FROM rust:1.95-bookworm AS build
# The toolchain of rust-toolchain.toml, without the Wasm target and components it
# also lists (not needed for this native binary).
ENV RUSTUP_TOOLCHAIN=1.95.0
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p portcullis-testbed --bin testbed

FROM debian:bookworm-slim
COPY --from=build /src/target/release/testbed /usr/local/bin/testbed
# scripts/demo runs `testbed serve ... --file testdata/jwks.json` from the
# repository root; the same relative path works here.
WORKDIR /portcullis
COPY testdata/jwks.json testdata/jwks.json
ENTRYPOINT ["testbed"]
CMD ["--help"]
