# Multi-stage build of a small, non-root image whose entrypoint is the agent.
#   docker build -t flightdeck .
#   docker run --rm flightdeck --help                                   (the agent's options)
#   docker run --rm --entrypoint flightdeck flightdeck validate /env    (any other command)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin flightdeck \
    && install -D target/release/flightdeck /out/flightdeck

# distroless/cc: glibc, libgcc and OpenSSL (git2 links libssl), no shell, a nonroot user (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/flightdeck /usr/local/bin/flightdeck
COPY schemas /usr/share/flightdeck/schemas
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flightdeck", "agent"]
CMD ["--config", "/etc/flightdeck/agent.yaml"]
