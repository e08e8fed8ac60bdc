package filters

import "testing"

func TestPatterns(t *testing.T) {
	ps, err := ParsePatterns([]string{"/status/conditions/*/lastHeartbeatTime", "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"/status/conditions/0/lastHeartbeatTime":                                  true,
		"/status/conditions/12/lastHeartbeatTime":                                 true,
		"/status/conditions/0/lastTransitionTime":                                 false,
		"/status/conditions":                                                      false,
		"/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration": true,
		"/metadata/annotations/other":                                             false,
	} {
		if got := ps.Match(path); got != want {
			t.Errorf("Match(%s) = %v, want %v", path, got, want)
		}
	}
	if _, err := ParsePattern("status"); err == nil {
		t.Error("pattern without leading / accepted")
	}
	if !DefaultIgnore.Match("/metadata/resourceVersion") || DefaultIgnore.Match("/metadata/generation") {
		t.Error("default ignore set")
	}
}
