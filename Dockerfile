# Release build of the server; the page is copied beside it, migrations are compiled in.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
WORKDIR /app
COPY --from=build /src/target/release/boxoffice /usr/local/bin/boxoffice
COPY static ./static
ENV BIND_ADDR=0.0.0.0:8080
EXPOSE 8080
CMD ["boxoffice"]
