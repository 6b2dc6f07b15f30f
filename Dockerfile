# ecliptic in a container: built with the Rust toolchain, run from a small Debian image
# as an unprivileged user, with the data directory on a volume.
#
#   docker build -t ecliptic .
#   docker run -p 8080:8080 -p 7001:7001 -p 7002:7002 -v ecliptic-data:/var/lib/ecliptic ecliptic
#   docker run --rm -v ecliptic-data:/var/lib/ecliptic ecliptic admin create-user root --role admin

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ecliptic \
    && cp target/release/ecliptic /usr/local/bin/ecliptic

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ecliptic ecliptic \
    && mkdir -p /var/lib/ecliptic \
    && chown ecliptic:ecliptic /var/lib/ecliptic
COPY --from=build /usr/local/bin/ecliptic /usr/local/bin/ecliptic
USER 10001:10001
WORKDIR /var/lib/ecliptic
VOLUME ["/var/lib/ecliptic"]
# Listen on every interface inside the container; publish the ports you want.
ENV ECLIPTIC_DATA_DIR=/var/lib/ecliptic \
    ECLIPTIC_HTTP=0.0.0.0:8080 \
    ECLIPTIC_DEV_TCP=0.0.0.0:7001 \
    ECLIPTIC_LOBBY_TCP=0.0.0.0:7002
EXPOSE 8080 7001 7002
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ecliptic"]
CMD ["serve"]
