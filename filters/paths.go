package filters

import (
	"fmt"
	"strings"

	"github.com/kubefeed/kubefeed/jsonpatch"
)

var _ jsonpatch.Matcher = Patterns(nil)

// pattern is a JSON pointer whose segments may be "*" (any one segment). A
// pattern also matches everything below the path it names.
type pattern struct {
	raw  string
	segs []string // unescaped
}

// ParsePattern parses "/status/conditions/*/lastHeartbeatTime".
func ParsePattern(s string) (pattern, error) {
	if !strings.HasPrefix(s, "/") {
		return pattern{}, fmt.Errorf("%q is not a JSON pointer (it must start with /)", s)
	}
	return pattern{raw: s, segs: splitPointer(s)}, nil
}

// MustPattern is ParsePattern for constants.
func MustPattern(s string) pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

func (p pattern) String() string { return p.raw }

func (p pattern) matchSegs(segs []string) bool {
	if len(segs) < len(p.segs) {
		return false
	}
	for i, s := range p.segs {
		if s != "*" && s != segs[i] {
			return false
		}
	}
	return true
}

// Patterns is a set of patterns; the zero value matches nothing.
type Patterns []pattern

// ParsePatterns parses a list, naming the first bad one.
func ParsePatterns(ss []string) (Patterns, error) {
	out := make(Patterns, 0, len(ss))
	for _, s := range ss {
		p, err := ParsePattern(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Match reports whether any pattern matches path.
func (ps Patterns) Match(path string) bool {
	if len(ps) == 0 {
		return false
	}
	return ps.MatchTokens(splitPointer(path))
}

// MatchTokens reports whether a pattern matches the path of the unescaped
// tokens or a path above it (jsonpatch.Matcher).
func (ps Patterns) MatchTokens(segs []string) bool {
	for _, p := range ps {
		if p.matchSegs(segs) {
			return true
		}
	}
	return false
}

// BelowTokens reports whether some pattern names a path strictly below the
// path of the unescaped tokens (jsonpatch.Matcher).
func (ps Patterns) BelowTokens(segs []string) bool {
	for _, p := range ps {
		if len(p.segs) <= len(segs) {
			continue
		}
		ok := true
		for i, s := range segs {
			if p.segs[i] != "*" && p.segs[i] != s {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func splitPointer(s string) []string {
	if s == "" || s == "/" {
		return nil
	}
	parts := strings.Split(s[1:], "/")
	for i, p := range parts {
		if strings.Contains(p, "~") {
			parts[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(p)
		}
	}
	return parts
}

// DefaultIgnore is removed from every patch: the envelope carries the
// resourceVersion, managedFields never enter the cache, and heartbeat
// timestamps change on every heartbeat without meaning anything.
var DefaultIgnore = Patterns{
	MustPattern("/metadata/resourceVersion"),
	MustPattern("/metadata/managedFields"),
	MustPattern("/status/conditions/*/lastHeartbeatTime"),
	MustPattern("/status/conditions/*/lastProbeTime"),
}

// GenerationPath is ignored when it is the only change left: it moves with
// the spec and says nothing on its own.
const GenerationPath = "/metadata/generation"
