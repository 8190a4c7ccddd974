# syntax=docker/dockerfile:1
#
# eventfn container image: a static binary on distroless, running as the
# unprivileged "nonroot" user (65532), with /healthz, /readyz and /metrics on
# :9090 and JSON logs. The rules file is read from $EVENTFN_CONFIG
# (/etc/eventfn/eventfn.yaml: mount it, e.g. from a ConfigMap); the journal
# (runner.state_dir) belongs on a volume at /var/lib/eventfn.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t eventfn .
#   docker run -v $PWD/examples/quickstart:/etc/eventfn:ro -p 9090:9090 eventfn
#
# Reload rules with `docker kill -s HUP <container>` (or just edit the file:
# it is watched). SLURM steps need sacctmgr and munge, which this image does
# not carry: run eventfn on the head node (examples/systemd) for those, or
# build FROM an image that has slurm-client.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The build flags live in scripts/build.sh, shared with the tests.
RUN sh scripts/build.sh /out/eventfn "${VERSION}" \
 && mkdir -p /out/state /out/config

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="eventfn" \
      org.opencontainers.image.description="Declarative event runner for Waldur sites: rules in YAML, events from RabbitMQ (STOMP/MQTT), steps as commands, webhooks and Waldur API calls" \
      org.opencontainers.image.source="https://github.com/eventfn/eventfn" \
      org.opencontainers.image.url="https://github.com/eventfn/eventfn" \
      org.opencontainers.image.documentation="https://github.com/eventfn/eventfn#readme" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/eventfn /eventfn
COPY --from=build --chown=65532:65532 /out/state /var/lib/eventfn
COPY --from=build /out/config /etc/eventfn
ENV EVENTFN_CONFIG=/etc/eventfn/eventfn.yaml
USER 65532:65532
EXPOSE 9090
VOLUME ["/var/lib/eventfn"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["/eventfn", "healthcheck"]
ENTRYPOINT ["/eventfn"]
CMD ["run", "--listen", ":9090", "--log-format", "json"]
