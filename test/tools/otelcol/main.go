// Code in the form "go.opentelemetry.io/collector/cmd/builder" (ocb) generates
// for the manifest below; written by hand so that building the test Collector
// needs nothing but the Go module proxy. Keep every Collector module at one
// release (core v0.152.0 / v1.58.0, contrib v0.152.0).
//
//	dist: { name: otelcol-kubefeed-test, version: 0.152.0 }
//	receivers:  [otlpreceiver, k8sobjectsreceiver (contrib)]
//	exporters:  [fileexporter (contrib)]
//	providers:  [env, file, yaml]

// Program otelcol is the OpenTelemetry Collector the kubefeed tests and
// benchmarks start: OTLP in (gRPC and HTTP), the file exporter out, and
// the k8sobjects receiver for the benchmark that compares with it.
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	envprovider "go.opentelemetry.io/collector/confmap/provider/envprovider"
	fileprovider "go.opentelemetry.io/collector/confmap/provider/fileprovider"
	yamlprovider "go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

func main() {
	info := component.BuildInfo{
		Command:     "otelcol",
		Description: "OpenTelemetry Collector for kubefeed's tests and benchmarks.",
		Version:     "0.152.0",
	}

	set := otelcol.CollectorSettings{
		BuildInfo: info,
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
			},
		},
		ProviderModules: map[string]string{
			envprovider.NewFactory().Create(confmap.ProviderSettings{}).Scheme():  "go.opentelemetry.io/collector/confmap/provider/envprovider v1.58.0",
			fileprovider.NewFactory().Create(confmap.ProviderSettings{}).Scheme(): "go.opentelemetry.io/collector/confmap/provider/fileprovider v1.58.0",
			yamlprovider.NewFactory().Create(confmap.ProviderSettings{}).Scheme(): "go.opentelemetry.io/collector/confmap/provider/yamlprovider v1.58.0",
		},
	}

	cmd := otelcol.NewCommand(set)
	if err := cmd.Execute(); err != nil {
		log.Fatalf("collector server run finished with error: %v", err)
	}
}
