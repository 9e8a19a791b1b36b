# syntax=docker/dockerfile:1
#
# One Dockerfile for every Customs service: the services share one Go
# workspace (go.work) and most of their dependencies, so one parameterised
# file keeps the builder stage, its module cache and its flags identical for
# all of them. Build one image per service:
#
#   docker build --build-arg SERVICE=ingest  -t customs/ingest  .
#   docker build --build-arg SERVICE=scanner -t customs/scanner .
#
# docker-compose.yml does this for every service.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
ARG SERVICE
WORKDIR /src
# Trivy v0.74 imports encoding/json/v2 (see the Makefile). CGO off gives a
# static binary that runs on distroless/static. GO_VERSION is go.work's, so
# the image's Go is the one to use and none is downloaded.
ENV GOEXPERIMENT=jsonv2 \
    CGO_ENABLED=0 \
    GOFLAGS=-buildvcs=false \
    GOTOOLCHAIN=local
# The whole repository: go.work ties the in-repo modules together, so a
# service builds against the pkg/ and gen/go/ next to it, not a published
# version.
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<ingest|query|scanner|signer|customs>"; exit 1; }; \
    test -f "services/${SERVICE}/main.go" || { echo "no service ${SERVICE} under services/"; exit 1; }; \
    go build -trimpath -ldflags "-s -w" -o /out/service "./services/${SERVICE}"

# distroless/static: no shell, no package manager, CA certificates and
# /etc/passwd with the nonroot user (65532) only.
FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.source="https://github.com/customs-dev/customs" \
      org.opencontainers.image.title="customs-${SERVICE}"
COPY --from=build /out/service /usr/local/bin/service
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/service"]
