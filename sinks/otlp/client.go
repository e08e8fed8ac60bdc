package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/kubefeed/kubefeed/sinks"
)

// client sends one export request and reports what the receiver said:
// nil with the partial success's rejected count and message, or the
// classified error (errors.go).
type client interface {
	export(ctx context.Context, req plogotlp.ExportRequest) (rejected int64, msg string, err error)
	close() error
}

// grpcClient exports over OTLP/gRPC.
type grpcClient struct {
	conn    *grpc.ClientConn
	logs    plogotlp.GRPCClient
	headers *headerSet
	opts    []grpc.CallOption
	target  string
	scrub   func(string) string
}

// newGRPCClient builds the connection; it dials lazily, so that a
// Collector that is down fails exports (retried), not the sink's start.
func newGRPCClient(c Config, headers *headerSet) (*grpcClient, error) {
	target, useTLS, err := grpcTarget(c.Endpoint, c.TLS != nil)
	if err != nil {
		return nil, fmt.Errorf("otlp endpoint: %w", err)
	}
	creds := insecure.NewCredentials()
	if useTLS {
		t := c.TLS
		if t == nil {
			t = &sinks.TLS{}
		}
		tc, err := sinks.TLSConfig(t)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("otlp grpc client for %s: %w", target, err)
	}
	g := &grpcClient{conn: conn, logs: plogotlp.NewGRPCClient(conn), headers: headers, target: target, scrub: headers.scrub}
	if c.Compression == CompressionGzip {
		g.opts = append(g.opts, grpc.UseCompressor(grpcgzip.Name))
	}
	return g, nil
}

func (g *grpcClient) export(ctx context.Context, req plogotlp.ExportRequest) (int64, string, error) {
	if hs := g.headers.current(); len(hs) > 0 {
		md := make(metadata.MD, len(hs))
		for k, v := range hs {
			md.Set(strings.ToLower(k), v)
		}
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	resp, err := g.logs.Export(ctx, req, g.opts...)
	if err != nil {
		return 0, "", classifyGRPC(err, g.target, g.scrub)
	}
	ps := resp.PartialSuccess()
	return ps.RejectedLogRecords(), g.scrub(ps.ErrorMessage()), nil
}

func (g *grpcClient) close() error { return g.conn.Close() }

// httpClient exports over OTLP/HTTP with binary protobuf bodies.
type httpClient struct {
	client  *http.Client
	url     string
	target  string      // sinks.SafeURL of url
	fixed   http.Header // Content-Type, Content-Encoding
	headers *headerSet
	gzip    bool
	scrub   func(string) string
}

func newHTTPClient(c Config, headers *headerSet) (*httpClient, error) {
	u, err := httpURL(c.Endpoint)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(c.MaxInFlight, 2)
	if c.TLS != nil {
		tc, err := sinks.TLSConfig(c.TLS)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	h := &httpClient{
		// Redirects are not followed: the headers (credentials) stay
		// with the configured host, and the answer is classified.
		client: &http.Client{Timeout: c.Timeout.Duration, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		url: u, target: sinks.SafeURL(u), fixed: http.Header{}, headers: headers, gzip: c.Compression == CompressionGzip, scrub: headers.scrub,
	}
	h.fixed.Set("Content-Type", "application/x-protobuf")
	if h.gzip {
		h.fixed.Set("Content-Encoding", "gzip")
	}
	return h, nil
}

// maxResponse bounds how much of a response is read.
const maxResponse = 64 << 10

func (h *httpClient) export(ctx context.Context, req plogotlp.ExportRequest) (int64, string, error) {
	body, err := req.MarshalProto()
	if err != nil {
		return 0, "", sinks.Permanent(fmt.Errorf("otlp: encode request: %w", err))
	}
	if h.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(body); err != nil {
			return 0, "", sinks.Permanent(fmt.Errorf("otlp: gzip request: %w", err))
		}
		if err := zw.Close(); err != nil {
			return 0, "", sinks.Permanent(fmt.Errorf("otlp: gzip request: %w", err))
		}
		body = buf.Bytes()
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return 0, "", sinks.Permanent(fmt.Errorf("otlp POST %s: request: %w", h.target, err))
	}
	hr.Header = http.Header{}
	for k, v := range h.headers.current() {
		hr.Header.Set(k, v)
	}
	for k, v := range h.fixed {
		hr.Header[k] = v
	}
	resp, err := h.client.Do(hr)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // a *url.Error names the full URL
		}
		return 0, "", fmt.Errorf("otlp POST %s: %w", h.target, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return h.partial(resp, data)
	}
	e := &exportError{Target: h.target, Status: fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode)), Msg: h.scrub(statusMessage(resp.Header.Get("Content-Type"), data))}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		if loc, err := resp.Location(); err == nil {
			e.Msg = "redirect to " + sinks.SafeURL(loc.String()) + " not followed"
		}
	}
	return 0, "", classifyHTTP(e, resp.StatusCode, resp.Header.Get("Retry-After"), time.Now())
}

// partial reads the ExportLogsServiceResponse of a 2xx: protobuf, or JSON
// when the receiver answered so; an empty body is a full success.
func (h *httpClient) partial(resp *http.Response, data []byte) (int64, string, error) {
	if len(data) == 0 {
		return 0, "", nil
	}
	r := plogotlp.NewExportResponse()
	var err error
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		err = r.UnmarshalJSON(data)
	} else {
		err = r.UnmarshalProto(data)
	}
	if err != nil {
		// The records were accepted (2xx); what is unreadable is only
		// whether some were rejected: a failure, so that they are sent
		// again rather than perhaps lost.
		return 0, "", fmt.Errorf("otlp POST %s: unreadable response (%d bytes): %w", h.target, len(data), err)
	}
	ps := r.PartialSuccess()
	return ps.RejectedLogRecords(), h.scrub(ps.ErrorMessage()), nil
}

// statusMessage is the message of an error response: a google.rpc.Status
// in protobuf, or the start of the text.
func statusMessage(contentType string, data []byte) string {
	if strings.HasPrefix(contentType, "application/x-protobuf") || strings.HasPrefix(contentType, "application/protobuf") {
		var st status.Status
		if proto.Unmarshal(data, &st) == nil {
			return st.GetMessage()
		}
	}
	s := strings.ToValidUTF8(string(bytes.TrimSpace(data)), "?")
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}

func (h *httpClient) close() error {
	h.client.CloseIdleConnections()
	return nil
}
