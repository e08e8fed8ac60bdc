package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/exporter/config"
)

const fileBase = "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: pods\nsinks:\n  - name: f\n    file:\n      path: /tmp/events.jsonl\n"

func TestFileLinger(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       time.Duration
	}{
		{"default", "", config.DefaultFileLinger},
		{"explicit", "      linger: 20ms\n", 20 * time.Millisecond},
		{"off", "      linger: 0s\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse("f.yaml", []byte(fileBase+tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Sinks[0].File.Linger; got == nil || got.Duration != tc.want {
				t.Errorf("linger %v, want %v", got, tc.want)
			}
		})
	}
	_, err := config.Parse("f.yaml", []byte(fileBase+"      linger: 2s\n"))
	if err == nil || !strings.Contains(err.Error(), "sinks[0].file.linger: must be between 0s and 1s, got 2s") {
		t.Fatalf("linger 2s: %v", err)
	}
}
