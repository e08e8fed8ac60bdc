# syntax=docker/dockerfile:1
# Multi-stage, static build; the final image is distroless static, non-root
# (uid 65532), with no shell. The build flags match `make build`, and
# test/e2e checks that the binary builds with exactly these flags.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
    -ldflags "-s -w -X github.com/kubefeed/kubefeed/cmd/kubefeed/app.version=${VERSION} -X github.com/kubefeed/kubefeed/cmd/kubefeed/app.commit=${COMMIT}" \
    -o /out/kubefeed ./cmd/kubefeed

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kubefeed /usr/local/bin/kubefeed
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubefeed"]
CMD ["run", "--config", "/etc/kubefeed/config.yaml"]
