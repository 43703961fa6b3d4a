# Multi-stage build of a small, non-root image whose entrypoint is the agent.
#   docker build -t flightdeck .
#   docker run --rm flightdeck --help                       (the agent)
#   docker run --rm --entrypoint flightdeck flightdeck validate /env   (other commands)
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/plan.rs \
    && cargo build --release --locked --bin flightdeck || true
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin flightdeck

# distroless/cc has glibc, libgcc and OpenSSL (git2 links libssl), no shell, and a nonroot user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/flightdeck /usr/local/bin/flightdeck
COPY schemas /usr/share/flightdeck/schemas
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flightdeck", "agent"]
CMD ["--config", "/etc/flightdeck/agent.yaml"]
