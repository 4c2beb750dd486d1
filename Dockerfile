# Build: docker build -t poolgate .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/poolgate ./cmd/server

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/poolgate /poolgate
# Relative paths (POOLGATE_RESULTS_DIR's default, .data/results) land in the
# nonroot user's home, the one directory it may write.
WORKDIR /home/nonroot
ENTRYPOINT ["/poolgate"]
CMD ["serve"]
