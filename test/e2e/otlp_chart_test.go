package e2e

import (
	"strings"
	"testing"
)

// The chart's schema knows the otlp sink: a good block renders, a bad one
// is refused at its path.
func TestOTLPChartSchema(t *testing.T) {
	good := `config.sinks=[{"name":"otel","otlp":{"endpoint":"otel-collector.observability.svc:4317","shape":"entity","protocol":"grpc","compression":"gzip","headers":{"X-Tenant":"a"},"batch":256,"linger":"50ms","maxInFlight":8,"tls":{"caFile":"/etc/ca.pem"}}}]`
	if out, err := helm(t, "template", "t", chartDir, "--set-json", good); err != nil {
		t.Fatalf("helm template with an otlp sink: %v\n%s", err, out)
	} else if !strings.Contains(out, "otel-collector.observability.svc:4317") {
		t.Errorf("the rendered config lacks the otlp endpoint:\n%s", out)
	}
	for _, tc := range []struct{ sink, want string }{
		{`{"name":"otel","otlp":{"endpoint":"c:4317","shape":"logs"}}`, "/config/sinks/0/otlp/shape"},
		{`{"name":"otel","otlp":{"endpoint":"c:4317","protocol":"thrift"}}`, "/config/sinks/0/otlp/protocol"},
		{`{"name":"otel","otlp":{"endpoint":"c:4317","compression":"zstd"}}`, "/config/sinks/0/otlp/compression"},
		{`{"name":"otel","otlp":{"endpoint":"c:4317","batch":0}}`, "/config/sinks/0/otlp/batch"},
		{`{"name":"otel","otlp":{"endpoint":"c:4317","timeout":"soon"}}`, "/config/sinks/0/otlp/timeout"},
		{`{"name":"otel","otlp":{"shape":"entity"}}`, "missing property 'endpoint'"},
		{`{"name":"otel","otlp":{"endpoint":"c:4317","endpoints":["x"]}}`, "'endpoints' not allowed"},
	} {
		out, err := helm(t, "template", "t", chartDir, "--set-json", "config.sinks=["+tc.sink+"]")
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("helm template with %s: %v, output lacks %q:\n%s", tc.sink, err, tc.want, out)
		}
	}
}
