package natsconn

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/event"
)

func TestSubjects(t *testing.T) {
	e := &event.Event{Cluster: "prod-eu-1", APIVersion: "networking.k8s.io/v1", Resource: "ingresses", Namespace: "shop", Name: "web.v2", Kind: "Ingress", Type: event.Deleted.Type()}
	for _, tc := range []struct{ tmpl, want string }{
		{DefaultSubject, "kubefeed.prod-eu-1.networking_k8s_io.ingresses.shop.deleted"},
		{"feed.{kind}.{name}", "feed.Ingress.web_v2"},
		{"x.{group}-{version}.{change}", "x.networking_k8s_io-v1.deleted"},
	} {
		s, err := CompileSubject(tc.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Render(e); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.tmpl, got, tc.want)
		}
	}
	core := &event.Event{Cluster: "c", APIVersion: "v1", Resource: "nodes", Name: "n*1 >x", Type: event.Added.Type()}
	s, _ := CompileSubject("k.{group}.{resource}.{namespace}.{name}")
	if got := s.Render(core); got != "k.core.nodes._.n%2A1%20%3Ex" {
		t.Errorf("escaping: %s", got)
	}
	if got := s.StreamSubject("c"); got != "k.>" {
		t.Errorf("stream subject %s", got)
	}
	d, _ := CompileSubject(DefaultSubject)
	if got := d.StreamSubject("prod"); got != "kubefeed.prod.>" {
		t.Errorf("default stream subject %s", got)
	}
	for _, bad := range []string{"a..b", "a.{nope}", "a.*", "a.>", "a.{cluster"} {
		if _, err := CompileSubject(bad); err == nil {
			t.Errorf("template %q accepted", bad)
		}
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		f, s string
		want bool
	}{
		{"kubefeed.>", "kubefeed.a.b", true},
		{"kubefeed.>", "kubefeed", false},
		{"kubefeed.*.b", "kubefeed.a.b", true},
		{"kubefeed.*.b", "kubefeed.a.c", false},
		{"a.b", "a.b", true},
		{"a.b", "a.b.c", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{">", "x.y", true},
		{"*.b.>", "a.b.c.d", true},
	} {
		if got := Matches(tc.f, tc.s); got != tc.want {
			t.Errorf("Matches(%s, %s) = %v", tc.f, tc.s, got)
		}
	}
}

func TestRedact(t *testing.T) {
	if got := Redact([]string{"nats://u:p@h:4222", "nats://h2:4222"}); got != "nats://h:4222,nats://h2:4222" {
		t.Errorf("Redact = %s", got)
	}
}

// TestEscapeEveryByte pins the escaping of every byte (the fast path
// returns plain values as they are) to the documented rule.
func TestEscapeEveryByte(t *testing.T) {
	ref := func(v string) string {
		if v == "" {
			return "_"
		}
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '.':
				b.WriteByte('_')
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
				b.WriteByte(c)
			default:
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String()
	}
	for c := 0; c < 256; c++ {
		for _, v := range []string{string([]byte{byte(c)}), "a" + string([]byte{byte(c)}) + "b"} {
			if got, want := escape(v), ref(v); got != want {
				t.Errorf("escape(%q) = %q, want %q", v, got, want)
			}
		}
	}
	for _, v := range []string{"", "web", "kube-system", "a/b~c", "ünï", "x.y.z"} {
		if got, want := escape(v), ref(v); got != want {
			t.Errorf("escape(%q) = %q, want %q", v, got, want)
		}
	}
}
