package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/test/cluster"
)

func TestAlertRulesPassPromtool(t *testing.T) {
	promtool, err := cluster.Binary("promtool")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", filepath.Join(cluster.RepoRoot(), "docs", "alerts.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// yamlKeys lists every key path of the config types ("watch[].filter").
func yamlKeys(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.Name() == "Duration" {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")
		if len(tag) > 1 && tag[1] == "inline" {
			yamlKeys(f.Type, prefix, out)
			continue
		}
		if tag[0] == "" || tag[0] == "-" {
			continue
		}
		p := tag[0]
		if prefix != "" {
			p = prefix + "." + tag[0]
		}
		*out = append(*out, p)
		yamlKeys(f.Type, p, out)
	}
}

// The configuration reference names every key the config types accept.
func TestConfigurationReferenceCoversEveryKey(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(cluster.RepoRoot(), "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	yamlKeys(reflect.TypeOf(config.Config{}), "", &keys)
	if len(keys) < 40 {
		t.Fatalf("only %d keys found", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(string(b), "`"+k+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", k)
		}
	}
}
