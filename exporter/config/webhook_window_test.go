package config_test

import (
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/exporter/config"
)

const webhookBase = "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: pods\nsinks:\n  - name: hook\n    webhook:\n      url: http://127.0.0.1:9000/events\n"

func TestWebhookWindowDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, yaml  string
		linger      time.Duration
		maxInFlight int
	}{
		{"no batch", "", 0, 4},
		{"batch", "      batch: 100\n", 50 * time.Millisecond, 4},
		{"explicit", "      batch: 10\n      linger: 5ms\n      maxInFlight: 16\n", 5 * time.Millisecond, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse("f.yaml", []byte(webhookBase+tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			w := c.Sinks[0].Webhook
			if w.Linger.Duration != tc.linger || w.MaxInFlight != tc.maxInFlight {
				t.Errorf("linger %v, maxInFlight %d; want %v, %d", w.Linger.Duration, w.MaxInFlight, tc.linger, tc.maxInFlight)
			}
		})
	}
}

func TestWebhookWindowProblems(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"linger without batch", "      linger: 10ms\n", []string{`sinks[0].webhook.linger: only applies with batch > 1`}},
		{"negative linger", "      batch: 10\n      linger: -1s\n", []string{`f.yaml:10:1: duration "-1s" is negative`}},
		{"negative maxInFlight", "      maxInFlight: -2\n", []string{`sinks[0].webhook.maxInFlight: must not be negative`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("f.yaml", []byte(webhookBase+tc.yaml))
			wantProblems(t, err, tc.want)
		})
	}
}
