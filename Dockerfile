# Multi-stage build of the three service binaries; a small non-root runtime image.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins \
 && mkdir /out && cp target/release/gateway target/release/auth-service target/release/registry /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 --home /app rpc
WORKDIR /app
COPY --from=build /out/ /usr/local/bin/
COPY config/ /app/config/
RUN mkdir -p /app/data && chown rpc /app/data
USER rpc
