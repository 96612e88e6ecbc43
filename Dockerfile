# repnet in a container: `docker build -t repnet .`, then
#   docker run -p 8080:8080 -v repnet-data:/data repnet
# (docs/integrations.md, "Docker"). The server listens on 8080 and keeps its knowledge base in
# the /data volume; it runs as the unprivileged user `repnet` (uid 10001).

# ---- build -----------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# --locked: the versions of Cargo.lock, as CI tests them.
RUN cargo build --release --locked -p repnet-cli \
 && strip target/release/repnet \
 && target/release/repnet --version

# ---- run -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# CA certificates for feeds and upstreams over https; nothing else is needed at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin repnet \
 && mkdir -p /data \
 && chown repnet:repnet /data
COPY --from=build /src/target/release/repnet /usr/local/bin/repnet
USER repnet:repnet
ENV REPNET_DATA=/data \
    REPNET_LISTEN=0.0.0.0:8080 \
    XDG_CONFIG_HOME=/data/.config \
    XDG_CACHE_HOME=/data/.cache \
    XDG_STATE_HOME=/data/.state
VOLUME ["/data"]
EXPOSE 8080
# Ready: the knowledge base is open and the server answers (`repnet health` asks /readyz).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["repnet", "health", "--server", "http://127.0.0.1:8080"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["repnet"]
CMD ["serve"]
