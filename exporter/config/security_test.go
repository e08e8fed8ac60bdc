package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
)

func TestSecurityOptions(t *testing.T) {
	dir := t.TempDir()
	key := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := key("good", strings.Repeat("k", 32)+"\n")
	short := key("short", strings.Repeat("k", 31)+"\n")
	empty := key("empty", "  \n")
	base := "apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: secrets\n"
	hook := "sinks:\n  - name: hook\n    webhook:\n      url: https://hooks.example.com/x\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string // one per expected problem; none: valid
	}{
		{"good key", base + "redactionKeyFile: " + good + "\n" + hook, nil},
		{"short key", base + "redactionKeyFile: " + short + "\n" + hook, []string{`f.yaml:5:19: redactionKeyFile: key is 31 bytes, need at least 32`}},
		{"empty key", base + "redactionKeyFile: " + empty + "\n" + hook, []string{`f.yaml:5:19: redactionKeyFile: key is 0 bytes`}},
		{"missing key", base + "redactionKeyFile: " + filepath.Join(dir, "nope") + "\n" + hook, []string{`f.yaml:5:19: redactionKeyFile: cannot read the key`}},
		{"webhook options", base + hook + "      followRedirects: sameHost\n      retryOn: [400, 500]\n      permanentOn: [401, 503]\n    deadLetter: { file: /var/lib/kubefeed/dead.jsonl }\n", nil},
		{"bad redirect policy", base + hook + "      followRedirects: always\n", []string{`f.yaml:9:24: sinks[0].webhook.followRedirects: must be never or sameHost, got "always"`}},
		{"bad status codes", base + hook + "      retryOn: [200, 401]\n      permanentOn: [401, 700]\n",
			[]string{`f.yaml:9:17: sinks[0].webhook.retryOn[0]: must be an HTTP status from 300 to 599, got 200`, `f.yaml:10:21: sinks[0].webhook.permanentOn[0]: status 401 is in retryOn too`, `f.yaml:10:26: sinks[0].webhook.permanentOn[1]: must be an HTTP status`}},
		{"dead letter without file", base + hook + "    deadLetter: {}\n", []string{`f.yaml:9:5: sinks[0].deadLetter: file is required`}},
		{"dead letter is the sink's file", base + "sinks:\n  - name: f\n    file: { path: /tmp/a }\n    deadLetter: { file: /tmp/a }\n", []string{`f.yaml:8:25: sinks[0].deadLetter.file: must not be the sink's own file`}},
		{"jetstream dead letter covered", base + "sinks:\n  - name: a\n    jetstream:\n      servers: [nats://n:4222]\n      stream: S\n      deadLetterSubject: kubefeed.deadletter\n      provision: { subjects: [\"kubefeed.>\"] }\n", nil},
		{"jetstream dead letter with default subjects", base + "sinks:\n  - name: a\n    jetstream:\n      servers: [nats://n:4222]\n      stream: S\n      deadLetterSubject: kubefeed.deadletter\n      provision: { replicas: 3 }\n", nil},
		{"jetstream dead letter not covered", base + "sinks:\n  - name: a\n    jetstream:\n      servers: [nats://n:4222]\n      stream: S\n      deadLetterSubject: kubefeed.deadletter\n      provision: { subjects: [\"kubefeed.prod.>\", \"other.*\"] }\n",
			[]string{`f.yaml:11:30: sinks[0].jetstream.provision.subjects: no subject of the stream covers deadLetterSubject "kubefeed.deadletter"`}},
		{"jetstream dead letter wildcard", base + "sinks:\n  - name: a\n    jetstream:\n      servers: [nats://n:4222]\n      stream: S\n      deadLetterSubject: kubefeed.dead.>\n",
			[]string{`f.yaml:10:26: sinks[0].jetstream.deadLetterSubject: subject "kubefeed.dead.>": wildcards`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("f.yaml", []byte(tc.yaml))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("valid config rejected:\n%v", err)
				}
				return
			}
			wantProblems(t, err, tc.want)
		})
	}
}

func TestWebhookDefaults(t *testing.T) {
	c, err := config.Parse("f.yaml", []byte("apiVersion: kubefeed.io/v1alpha1\nkind: Config\nwatch:\n  - resource: pods\nsinks:\n  - name: h\n    webhook: { url: http://x/ }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Sinks[0].Webhook; w.FollowRedirects != config.FollowRedirectsNever || c.Sinks[0].DeadLetter != nil {
		t.Errorf("followRedirects %q, deadLetter %v", w.FollowRedirects, c.Sinks[0].DeadLetter)
	}
}
