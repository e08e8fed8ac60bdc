package otlp

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kubefeed/kubefeed/sinks"
)

// Protocols (protocol:).
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Shapes (shape:): how a change becomes a log record (encode.go).
const (
	// ShapeK8sObjects: what the Collector's k8sobjects receiver emits in
	// watch mode, body {type, object}.
	ShapeK8sObjects = "k8sobjects"
	// ShapeEntity: OpenTelemetry entity events, entity.state and
	// entity.delete.
	ShapeEntity = "entity"
)

// Compressions (compression:).
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
)

// Defaults and bounds of the block.
const (
	defaultTimeout     = 10 * time.Second
	defaultBatch       = 512
	defaultLinger      = 20 * time.Millisecond
	defaultMaxInFlight = 4
	// defaultMaxRequestBytes stays under the Collector's OTLP gRPC
	// receiver's default max_recv_msg_size_mib (4 MiB).
	defaultMaxRequestBytes = 4<<20 - 64<<10
	maxBatch               = 10000
	maxInFlightLimit       = 256
	minRequestBytes        = 64 << 10
	maxRequestBytes        = 256 << 20
	// logsPath is what an http endpoint without a path is sent to.
	logsPath = "/v1/logs"
)

// Config is the sink's block of the config file (otlp:): changes as
// OpenTelemetry log records, exported over OTLP (gRPC or HTTP/protobuf)
// to a Collector or any OTLP receiver, at least once.
type Config struct {
	// Endpoint: for grpc host:port (http:// or https:// in front chooses
	// plaintext or TLS; bare host:port is plaintext unless tls is set);
	// for http a URL, to which /v1/logs is added when it has no path.
	Endpoint string `yaml:"endpoint"`
	// Protocol: grpc (default) or http (protobuf over HTTP).
	Protocol string `yaml:"protocol"`
	// Shape: k8sobjects (default) or entity.
	Shape string `yaml:"shape"`
	// Headers added to every request (gRPC metadata, or HTTP headers).
	Headers map[string]string `yaml:"headers"`
	// HeaderFiles: header name -> file whose content is the value.
	HeaderFiles map[string]string `yaml:"headerFiles"`
	TLS         *sinks.TLS        `yaml:"tls"`
	// Compression: none (default) or gzip.
	Compression string `yaml:"compression"`
	// Timeout of one export request (default 10s).
	Timeout sinks.Duration `yaml:"timeout"`
	// Batch is the most log records one request carries (default 512).
	Batch int `yaml:"batch"`
	// Linger is how long a request waits for more records after its first
	// (default 20ms; only with batch > 1).
	Linger sinks.Duration `yaml:"linger"`
	// MaxInFlight bounds the export requests in flight at once (default
	// 4); up to batch×maxInFlight objects wait or are in flight.
	MaxInFlight int `yaml:"maxInFlight"`
	// MaxRequestBytes bounds the encoded size of one request (default
	// 4 MiB less 64 KiB, under the Collector's gRPC default); a larger
	// event is shrunk as on the other sinks, or rejected.
	MaxRequestBytes int `yaml:"maxRequestBytes"`
}

// SetDefaults fills in the documented defaults.
func (c *Config) SetDefaults() {
	if c.Protocol == "" {
		c.Protocol = ProtocolGRPC
	}
	if c.Shape == "" {
		c.Shape = ShapeK8sObjects
	}
	if c.Compression == "" {
		c.Compression = CompressionNone
	}
	if c.Timeout.Duration == 0 {
		c.Timeout.Duration = defaultTimeout
	}
	if c.Batch == 0 {
		c.Batch = defaultBatch
	}
	if c.Batch > 1 && c.Linger.Duration == 0 {
		c.Linger.Duration = defaultLinger
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = defaultMaxInFlight
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = defaultMaxRequestBytes
	}
}

// Validate checks the block (defaults applied). It opens the header
// files, without reading them, so that a missing one is a problem of the
// config rather than of the first export.
func (c *Config) Validate() []sinks.Problem {
	var ps sinks.Problems
	switch c.Protocol {
	case ProtocolGRPC, ProtocolHTTP:
		c.validateEndpoint(&ps)
	default:
		ps.At("protocol", "must be %s or %s, got %q", ProtocolGRPC, ProtocolHTTP, c.Protocol)
	}
	switch c.Shape {
	case ShapeK8sObjects, ShapeEntity:
	default:
		ps.At("shape", "must be %s or %s, got %q", ShapeK8sObjects, ShapeEntity, c.Shape)
	}
	switch c.Compression {
	case CompressionNone, CompressionGzip:
	default:
		ps.At("compression", "must be %s or %s, got %q", CompressionNone, CompressionGzip, c.Compression)
	}
	ps.Nest("tls", c.TLS.Validate())
	if c.Batch < 1 || c.Batch > maxBatch {
		ps.At("batch", "must be between 1 and %d log records, got %d", maxBatch, c.Batch)
	}
	if c.Linger.Duration > 0 && c.Batch <= 1 {
		ps.At("linger", "only applies with batch > 1")
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > maxInFlightLimit {
		ps.At("maxInFlight", "must be between 1 and %d requests, got %d", maxInFlightLimit, c.MaxInFlight)
	}
	if c.MaxRequestBytes < minRequestBytes || c.MaxRequestBytes > maxRequestBytes {
		ps.At("maxRequestBytes", "must be between %d and %d, got %d", minRequestBytes, maxRequestBytes, c.MaxRequestBytes)
	}
	for _, h := range sortedKeys(c.Headers) {
		if err := c.checkHeaderName(h); err != nil {
			ps.At("headers", "%v", err)
		} else if err := c.checkHeaderValue(c.Headers[h]); err != nil {
			ps.At("headers", "header %q: %v", h, err)
		}
		if _, dup := c.HeaderFiles[h]; dup {
			ps.At("headerFiles", "header %q is set in headers too", h)
		}
	}
	for _, h := range sortedKeys(c.HeaderFiles) {
		if err := c.checkHeaderName(h); err != nil {
			ps.At("headerFiles", "%v", err)
			continue
		}
		f, err := os.Open(c.HeaderFiles[h])
		if err != nil {
			ps.At("headerFiles", "header %q: %v", h, err)
			continue
		}
		_ = f.Close()
	}
	return ps
}

// validateEndpoint checks the endpoint for the protocol.
func (c *Config) validateEndpoint(ps *sinks.Problems) {
	if c.Endpoint == "" {
		ex := "collector:4317"
		if c.Protocol == ProtocolHTTP {
			ex = "http://collector:4318"
		}
		ps.AtKey("", "endpoint is required (for example %s)", ex)
		return
	}
	if c.Protocol == ProtocolGRPC {
		if _, _, err := grpcTarget(c.Endpoint, c.TLS != nil); err != nil {
			ps.At("endpoint", "%v", err)
		} else if strings.HasPrefix(c.Endpoint, "http://") && c.TLS != nil {
			ps.At("tls", "an http:// endpoint is plaintext: use https:// or host:port with tls")
		}
		return
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.At("endpoint", "must be an http or https URL, such as http://collector:4318 (got %q)", sinks.SafeURL(c.Endpoint))
		return
	}
	if u.Scheme == "http" && c.TLS != nil {
		ps.At("tls", "an http:// endpoint is plaintext: use https://")
	}
}

// grpcTarget turns a grpc endpoint into the dial target and whether it
// uses TLS: host:port (TLS when a tls block is set), http://host:port
// (plaintext) or https://host:port (TLS).
func grpcTarget(endpoint string, tlsBlock bool) (target string, useTLS bool, err error) {
	hostport, secure := endpoint, tlsBlock
	switch {
	case strings.HasPrefix(endpoint, "https://"):
		hostport, secure = strings.TrimPrefix(endpoint, "https://"), true
	case strings.HasPrefix(endpoint, "http://"):
		hostport, secure = strings.TrimPrefix(endpoint, "http://"), false
	case strings.Contains(endpoint, "://"):
		return "", false, fmt.Errorf("must be host:port, http://host:port or https://host:port, such as collector:4317 (got %q)", sinks.SafeURL(endpoint))
	}
	host, port, err := net.SplitHostPort(strings.TrimSuffix(hostport, "/"))
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
		return "", false, fmt.Errorf("must be host:port, http://host:port or https://host:port, such as collector:4317 (got %q)", sinks.SafeURL(endpoint))
	}
	return net.JoinHostPort(host, port), secure, nil
}

// httpURL is where the http protocol POSTs: the endpoint, with /v1/logs
// when it has no path.
func httpURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("otlp endpoint %s: not an http or https URL", sinks.SafeURL(endpoint))
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = logsPath
	}
	return u.String(), nil
}

// checkHeaderName checks a header's name for the protocol: an HTTP
// token, and for gRPC a metadata key (sent in lower case), which allows
// fewer characters. gRPC fails an export with INTERNAL, a permanent
// error, for a key or value it does not allow: every event would be
// dropped.
func (c *Config) checkHeaderName(h string) error {
	if !validHeaderName(h) {
		return fmt.Errorf("%q is not a valid header name", h)
	}
	if c.Protocol == ProtocolGRPC && strings.IndexFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return fmt.Errorf("%q is not a valid gRPC metadata key (letters, digits, '-', '_', '.')", h)
	}
	return nil
}

// checkHeaderValue checks a header's value for the protocol: printable
// ASCII for gRPC metadata, no control character but tab for HTTP. The
// error names the byte, never the value (a credential).
func (c *Config) checkHeaderValue(v string) error {
	for i := 0; i < len(v); i++ {
		b := v[i]
		if c.Protocol == ProtocolGRPC && (b < 0x20 || b > 0x7e) {
			return fmt.Errorf("its value has a character gRPC metadata does not allow (printable ASCII only) at byte %d", i)
		}
		if c.Protocol != ProtocolGRPC && (b < 0x20 && b != '\t' || b == 0x7f) {
			return fmt.Errorf("its value has a control character at byte %d", i)
		}
	}
	return nil
}

// validHeaderName reports whether h is an HTTP token (what gRPC metadata
// keys and HTTP header names have in common).
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
