# Builds the sfu, whip-ingest and load-test binaries (rust:bookworm has
# libssl-dev); the runtime image has only the binaries, CA certificates and
# OpenSSL 3 (DTLS with OpenSSL peers, e.g. GStreamer's RSA certificates).
#   docker build -t whip-whep-sfu .
#   docker run --network host whip-whep-sfu sfu --help
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sfu -p whip-ingest -p load-test \
 && strip target/release/sfu target/release/whip-ingest target/release/load-test

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sfu /src/target/release/whip-ingest /src/target/release/load-test /usr/local/bin/
COPY sfu/sfu.toml /etc/sfu/sfu.toml
EXPOSE 8080/tcp 8189/udp
CMD ["sfu", "--config", "/etc/sfu/sfu.toml"]
