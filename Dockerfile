# Build stage: the release binary. Only the `budget` binary leaves this stage.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p budget-cli

# Run stage: a slim image with the binary and nothing else.
FROM debian:bookworm-slim
# libssl3 and the CA certificates: price sources and `--from` URLs may be https.
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home budget
COPY --from=build /src/target/release/budget /usr/local/bin/budget
USER budget
ENV BUDGET_HOST=0.0.0.0 \
    BUDGET_PORT=8013
EXPOSE 8013
HEALTHCHECK --interval=10s --timeout=5s --retries=5 CMD ["budget", "status", "--url", "http://127.0.0.1:8013"]
ENTRYPOINT ["budget"]
CMD ["start"]
