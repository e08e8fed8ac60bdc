package otlp_test

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kubefeed/kubefeed/sinks/otlp"
)

// gzipped counts the gRPC messages decompressed with gzip: the collector
// tells a compressed request by it (gRPC keeps grpc-encoding from the
// handler's metadata).
var gzipped atomic.Int64

type countingGzip struct{ encoding.Compressor }

func (c countingGzip) Decompress(r io.Reader) (io.Reader, error) {
	gzipped.Add(1)
	return c.Compressor.Decompress(r)
}

func init() {
	encoding.RegisterCompressor(countingGzip{encoding.GetCompressor("gzip")})
}

// verdict is what the fake collector answers to one request: an error
// (a gRPC status; over HTTP its status and headers) or a partial success
// rejecting some records.
type verdict struct {
	err      error
	http     int    // HTTP status to answer instead of 200
	retry    string // Retry-After
	rejected int64
	message  string
}

// collector is an OTLP logs receiver over gRPC and HTTP that keeps every
// request and answers as its judge says (nil judge: accept everything).
type collector struct {
	plogotlp.UnimplementedGRPCServer

	mu       sync.Mutex
	requests []plog.Logs
	accepted []string // ids of the records of accepted requests, in order
	headers  []map[string]string
	encoding []string
	judge    func(ids []string) verdict

	grpcAddr string
	httpURL  string
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	plogotlp.RegisterGRPCServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c.grpcAddr = lis.Addr().String()
	hs := httptest.NewServer(http.HandlerFunc(c.serveHTTP))
	t.Cleanup(hs.Close)
	c.httpURL = hs.URL
	return c
}

func (c *collector) setJudge(j func(ids []string) verdict) {
	c.mu.Lock()
	c.judge = j
	c.mu.Unlock()
}

// ids are the cloudevents.event_id attributes of a request's records.
func ids(ld plog.Logs) []string {
	var out []string
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				v, _ := lr.Attributes().Get(otlp.AttrEventID)
				out = append(out, v.Str())
			}
		}
	}
	return out
}

// handle records a request and returns the verdict on it.
func (c *collector) handle(ld plog.Logs, hdr map[string]string, enc string) verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, ld)
	c.headers = append(c.headers, hdr)
	c.encoding = append(c.encoding, enc)
	got := ids(ld)
	var v verdict
	if c.judge != nil {
		v = c.judge(got)
	}
	if v.err == nil && v.http == 0 && v.rejected == 0 {
		c.accepted = append(c.accepted, got...)
	}
	return v
}

func (c *collector) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	hdr := map[string]string{}
	for k, v := range md {
		hdr[k] = v[0]
	}
	enc := ""
	if gzipped.Swap(0) > 0 {
		enc = "gzip"
	}
	ld := plog.NewLogs()
	req.Logs().CopyTo(ld)
	v := c.handle(ld, hdr, enc)
	resp := plogotlp.NewExportResponse()
	if v.err != nil {
		return resp, v.err
	}
	if v.http != 0 {
		return resp, status.Error(codes.Internal, "this verdict is for HTTP")
	}
	resp.PartialSuccess().SetRejectedLogRecords(v.rejected)
	resp.PartialSuccess().SetErrorMessage(v.message)
	return resp, nil
}

func (c *collector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil || r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(data); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	hdr := map[string]string{}
	for k := range r.Header {
		hdr[k] = r.Header.Get(k)
	}
	v := c.handle(req.Logs(), hdr, r.Header.Get("Content-Encoding"))
	if v.http != 0 {
		if v.retry != "" {
			w.Header().Set("Retry-After", v.retry)
		}
		http.Error(w, v.message, v.http)
		return
	}
	if v.err != nil {
		http.Error(w, "this verdict is for gRPC", http.StatusBadRequest)
		return
	}
	resp := plogotlp.NewExportResponse()
	resp.PartialSuccess().SetRejectedLogRecords(v.rejected)
	resp.PartialSuccess().SetErrorMessage(v.message)
	out, _ := resp.MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (c *collector) acceptedIDs(*testing.T) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.accepted...)
}

func (c *collector) lastRequest(t *testing.T) plog.Logs {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.requests) == 0 {
		t.Fatal("the collector got no request")
	}
	return c.requests[len(c.requests)-1]
}

func (c *collector) requestCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.requests)
}

// newSink opens a sink to the collector over protocol.
func newSink(t *testing.T, col *collector, protocol string, cfg otlp.Config) *otlp.Sink {
	t.Helper()
	cfg.Protocol = protocol
	if protocol == otlp.ProtocolGRPC {
		cfg.Endpoint = col.grpcAddr
	} else {
		cfg.Endpoint = col.httpURL
	}
	if cfg.Timeout.Duration == 0 {
		cfg.Timeout.Duration = 5 * time.Second
	}
	cfg.SetDefaults()
	if ps := cfg.Validate(); len(ps) > 0 {
		t.Fatalf("config: %v", ps)
	}
	s, err := otlp.New(otlp.Options{Config: cfg, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}
