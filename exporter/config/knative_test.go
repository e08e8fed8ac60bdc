package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
)

// types: knative is an option of the sinks a Knative Broker can read;
// a bad value is reported at its position in the file.
func TestSinkTypes(t *testing.T) {
	head := "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: pods\nsinks:\n  - name: broker\n"
	blocks := map[string]string{
		"jetstream": "    jetstream:\n      servers: [nats://127.0.0.1:4222]\n      stream: KUBEFEED\n",
		"nats":      "    nats:\n      servers: [nats://127.0.0.1:4222]\n",
		"kafka":     "    kafka:\n      brokers: [kafka-0:9092]\n",
		"webhook":   "    webhook:\n      url: http://broker-ingress.knative-eventing.svc/ns/default\n",
	}
	for kind, block := range blocks {
		t.Run(kind, func(t *testing.T) {
			for _, ok := range []string{"knative", "kubefeed"} {
				c, err := config.Parse("f.yaml", []byte(head+block+"      types: "+ok+"\n"))
				if err != nil {
					t.Fatalf("types: %s: %v", ok, err)
				}
				var got string
				switch s := c.Sinks[0]; kind {
				case "jetstream":
					got = s.JetStream.Types
				case "nats":
					got = s.NATS.Types
				case "kafka":
					got = s.Kafka.Types
				case "webhook":
					got = s.Webhook.Types
				}
				if got != ok {
					t.Errorf("types: %s parsed as %q", ok, got)
				}
			}
			// On the line after the block's, at the value.
			_, err := config.Parse("f.yaml", []byte(head+block+"      types: Knative\n"))
			line := strings.Count(head+block, "\n") + 1
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) != 1 {
				t.Fatalf("types: Knative: %v, want one problem", err)
			}
			want := fmt.Sprintf("f.yaml:%d:14: sinks[0].", line) + kind + `.types: must be kubefeed or knative, got "Knative"`
			if !strings.Contains(err.Error(), want) {
				t.Errorf("types: Knative:\n%v\nwant %s", err, want)
			}
		})
	}
}

// The sinks no Broker reads have no such option: an unknown key.
func TestSinkTypesUnknownOnStdoutAndFile(t *testing.T) {
	head := "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: pods\nsinks:\n  - name: out\n"
	_, err := config.Parse("f.yaml", []byte(head+"    stdout:\n      types: knative\n"))
	if err == nil || !strings.Contains(err.Error(), `f.yaml:8:7: unknown key "types"`) {
		t.Errorf("stdout types: %v", err)
	}
}
