package sinks_test

import (
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/sinks"
)

func TestSafeURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://hooks.example.com", "https://hooks.example.com"},
		{"https://hooks.example.com/", "https://hooks.example.com"},
		{"https://user:s3cret@hooks.example.com:8443/services/T0/B0/s3cret?token=s3cret#s3cret", "https://hooks.example.com:8443/…"},
		{"https://hooks.example.com/?key=s3cret", "https://hooks.example.com/…"},
		{"http://127.0.0.1:9000/events", "http://127.0.0.1:9000/…"},
		{"nats://kf:s3cret@nats-0:4222", "nats://nats-0:4222"},
		{"nats://s3cret@[::1]:4222", "nats://[::1]:4222"},
		{"://s3cret", "<unparsable url>"},
		{"s3cret", "<unparsable url>"},
		{"", "<unparsable url>"},
	} {
		got := sinks.SafeURL(tc.in)
		if got != tc.want {
			t.Errorf("SafeURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "s3cret") {
			t.Errorf("SafeURL(%q) leaks the secret: %q", tc.in, got)
		}
	}
	if got := sinks.SafeURLs([]string{"nats://a:b@x:1", "tls://y:2"}); got != "nats://x:1,tls://y:2" {
		t.Errorf("SafeURLs = %q", got)
	}
}
