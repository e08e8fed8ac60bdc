package filters

import (
	"errors"
	"strings"
	"testing"
)

func TestExprs(t *testing.T) {
	pod := map[string]any{"status": map[string]any{"phase": "Failed"}, "spec": map[string]any{"replicas": int64(3)}}
	for _, tc := range []struct {
		src     string
		in      Input
		want    bool
		evalErr bool
	}{
		{"type == 'MODIFIED' && object.status.phase == 'Failed'", Input{Type: "MODIFIED", Object: pod}, true, false},
		{"type == 'MODIFIED' && object.status.phase == 'Failed'", Input{Type: "ADDED", Object: pod}, false, false},
		{"changedPaths.exists(p, p.startsWith('/spec'))", Input{Type: "MODIFIED", Object: pod, ChangedPaths: []string{"/spec/replicas"}}, true, false},
		{"changedPaths.exists(p, p.startsWith('/spec'))", Input{Type: "MODIFIED", Object: pod, ChangedPaths: []string{"/status/phase"}}, false, false},
		{"object.spec.replicas > 1", Input{Type: "ADDED", Object: pod}, true, false},
		{"oldObject == null", Input{Type: "ADDED", Object: pod}, true, false},
		{"object.metadata.labels.app == 'web'", Input{Type: "ADDED", Object: pod}, false, true},
	} {
		x, err := CompileExpr(tc.src)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		got, err := x.Match(tc.in)
		if got != tc.want || (err != nil) != tc.evalErr {
			t.Errorf("%s on %s: %v, %v; want %v, error %v", tc.src, tc.in.Type, got, err, tc.want, tc.evalErr)
		}
		if err != nil && !errors.Is(err, errEval) {
			t.Errorf("runtime error not errEval: %v", err)
		}
	}
}

func TestExprCompileErrors(t *testing.T) {
	for src, want := range map[string]string{
		"type == ":                      "column 9",
		"object.x ==== 1":               "column",
		"type + 1":                      "no matching overload",
		"'a'":                           "must be a bool",
		"nosuchvar == 1":                "undeclared reference",
		"changedPaths.exists(p, p > 1)": "no matching overload",
	} {
		_, err := CompileExpr(src)
		var xe *ExprError
		if !errors.As(err, &xe) || !strings.Contains(err.Error(), want) || xe.Column < 1 {
			t.Errorf("%q: %v, want an ExprError containing %q", src, err, want)
		}
	}
}

func TestExprCostLimit(t *testing.T) {
	x, err := CompileExpr("changedPaths.all(a, changedPaths.all(b, changedPaths.all(c, a + b + c != '')))")
	if err != nil {
		t.Fatal(err)
	}
	paths := make([]string, 200)
	for i := range paths {
		paths[i] = strings.Repeat("p", 10)
	}
	if _, err := x.Match(Input{Type: "MODIFIED", ChangedPaths: paths}); err == nil || !errors.Is(err, errEval) {
		t.Errorf("200^3 evaluations: %v, want the cost limit", err)
	}
}
