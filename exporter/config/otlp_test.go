package config_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
)

const otlpBase = "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: pods\nsinks:\n  - name: otel\n    otlp:\n"

func TestOTLPSinkDefaults(t *testing.T) {
	c, err := config.Parse("f.yaml", []byte(otlpBase+"      endpoint: collector:4317\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Sinks[0].OTLP
	if o.Protocol != "grpc" || o.Shape != "k8sobjects" || o.Compression != "none" || o.Batch != 512 ||
		o.MaxInFlight != 4 || o.Timeout.String() != "10s" || o.Linger.String() != "20ms" || o.MaxRequestBytes != 4<<20-64<<10 {
		t.Errorf("defaults: %+v", o)
	}
}

func TestOTLPSinkFullConfig(t *testing.T) {
	y := otlpBase + `      endpoint: https://otel.example.com:4318/custom/logs
      protocol: http
      shape: entity
      headers: { X-Tenant: team-a }
      tls: { caFile: /etc/ca.pem }
      compression: gzip
      timeout: 5s
      batch: 100
      linger: 100ms
      maxInFlight: 8
      maxRequestBytes: 1048576
`
	c, err := config.Parse("f.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Sinks[0].OTLP
	if o.Protocol != "http" || o.Shape != "entity" || o.Headers["X-Tenant"] != "team-a" || o.TLS.CAFile != "/etc/ca.pem" ||
		o.Compression != "gzip" || o.Batch != 100 || o.MaxInFlight != 8 || o.MaxRequestBytes != 1<<20 {
		t.Errorf("parsed: %+v", o)
	}
}

// kubefeed validate reports bad OTLP options at their position, as for
// every other sink block.
func TestOTLPSinkProblems(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	for _, tc := range []struct {
		name, otlp string
		want       []string
	}{
		{"no endpoint", "      shape: entity\n", []string{`f.yaml:7:5: sinks[0].otlp: endpoint is required (for example collector:4317)`}},
		{"no http endpoint", "      protocol: http\n", []string{`f.yaml:7:5: sinks[0].otlp: endpoint is required (for example http://collector:4318)`}},
		{"grpc endpoint with a path", "      endpoint: collector\n", []string{`f.yaml:8:17: sinks[0].otlp.endpoint: must be host:port, http://host:port or https://host:port`}},
		{"grpc endpoint with another scheme", "      endpoint: 'dns://c:4317'\n", []string{`f.yaml:8:17: sinks[0].otlp.endpoint: must be host:port`}},
		{"http endpoint not a URL", "      endpoint: collector:4318\n      protocol: http\n", []string{`f.yaml:8:17: sinks[0].otlp.endpoint: must be an http or https URL`}},
		{"plaintext with tls", "      endpoint: http://c:4318\n      protocol: http\n      tls: {caFile: /ca.pem}\n", []string{`f.yaml:10:12: sinks[0].otlp.tls: an http:// endpoint is plaintext`}},
		{"bad protocol, shape and compression", "      endpoint: c:4317\n      protocol: thrift\n      shape: raw\n      compression: zstd\n", []string{
			`f.yaml:9:17: sinks[0].otlp.protocol: must be grpc or http, got "thrift"`,
			`f.yaml:10:14: sinks[0].otlp.shape: must be k8sobjects or entity, got "raw"`,
			`f.yaml:11:20: sinks[0].otlp.compression: must be none or gzip, got "zstd"`}},
		{"window and sizes", "      endpoint: c:4317\n      batch: 0\n      maxInFlight: 1000\n      maxRequestBytes: 10\n", []string{
			`f.yaml:10:20: sinks[0].otlp.maxInFlight: must be between 1 and 256 requests, got 1000`,
			`f.yaml:11:24: sinks[0].otlp.maxRequestBytes: must be between 65536 and 268435456, got 10`}},
		{"negative batch", "      endpoint: c:4317\n      batch: -1\n", []string{`f.yaml:9:14: sinks[0].otlp.batch: must be between 1 and 10000 log records, got -1`}},
		{"linger without batch", "      endpoint: c:4317\n      batch: 1\n      linger: 1s\n", []string{`f.yaml:10:15: sinks[0].otlp.linger: only applies with batch > 1`}},
		{"bad header", "      endpoint: c:4317\n      headers: {'bad header': x}\n", []string{`sinks[0].otlp.headers: "bad header" is not a valid header name`}},
		// gRPC metadata keys are [0-9a-z-_.] and values printable ASCII:
		// validate refused neither, and gRPC then failed every export
		// with INTERNAL, a permanent error that dropped every event.
		{"grpc header name", "      endpoint: c:4317\n      headers: {'X!Tenant': a}\n", []string{`f.yaml:9:16: sinks[0].otlp.headers: "X!Tenant" is not a valid gRPC metadata key (letters, digits, '-', '_', '.')`}},
		{"grpc header value", "      endpoint: c:4317\n      headers: {X-Tenant: \"caf\\u00e9\"}\n", []string{`f.yaml:9:16: sinks[0].otlp.headers: header "X-Tenant": its value has a character gRPC metadata does not allow (printable ASCII only) at byte 3`}},
		{"http header value", "      endpoint: http://c:4318\n      protocol: http\n      headers: {X-Tenant: \"a\\nb\"}\n", []string{`f.yaml:10:16: sinks[0].otlp.headers: header "X-Tenant": its value has a control character at byte 1`}},
		{"missing header file", "      endpoint: c:4317\n      headerFiles: {authorization: " + missing + "}\n", []string{`sinks[0].otlp.headerFiles: header "authorization": open ` + missing}},
		{"tls pair", "      endpoint: c:4317\n      tls: {certFile: /c.pem}\n", []string{`sinks[0].otlp.tls: certFile and keyFile go together`}},
		{"unknown key", "      endpoint: c:4317\n      endpoints: [a]\n", []string{`f.yaml:9:7: unknown key "endpoints"`}},
		{"bad duration", "      endpoint: c:4317\n      timeout: soon\n", []string{`bad duration "soon"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("f.yaml", []byte(otlpBase+tc.otlp))
			wantProblems(t, err, tc.want)
		})
	}
}

func TestOTLPSinkWithAnotherKindIsAnError(t *testing.T) {
	_, err := config.Parse("f.yaml", []byte(otlpBase+"      endpoint: c:4317\n    stdout: {}\n"))
	if err == nil || !strings.Contains(err.Error(), "set exactly one sink kind (stdout, file, jetstream, nats, webhook, kafka, otlp)") {
		t.Errorf("otlp and stdout in one sink: %v", err)
	}
}
