package natsconn

import (
	"strings"

	"github.com/kubefeed/kubefeed/event"
)

// Subject is a compiled subject template.
type Subject struct {
	tokens [][]piece // one per subject token
}

type piece struct {
	literal string
	field   string // placeholder name without braces, or ""
}

// CompileSubject parses a template such as DefaultSubject.
func CompileSubject(tmpl string) (*Subject, error) {
	if err := CheckSubjectTemplate(tmpl); err != nil {
		return nil, err
	}
	s := &Subject{}
	for _, tok := range strings.Split(tmpl, ".") {
		var ps []piece
		for tok != "" {
			i := strings.IndexByte(tok, '{')
			if i < 0 {
				ps = append(ps, piece{literal: tok})
				break
			}
			if i > 0 {
				ps = append(ps, piece{literal: tok[:i]})
			}
			j := strings.IndexByte(tok, '}')
			ps = append(ps, piece{field: tok[i+1 : j]})
			tok = tok[j+1:]
		}
		s.tokens = append(s.tokens, ps)
	}
	return s, nil
}

// Render fills the template for an event. Every value is escaped, so it
// stays inside its token.
func (s *Subject) Render(e *event.Event) string {
	var buf [128]byte
	return string(s.appendRender(buf[:0], e))
}

// appendRender appends what Render returns to b.
func (s *Subject) appendRender(b []byte, e *event.Event) []byte {
	for i, ps := range s.tokens {
		if i > 0 {
			b = append(b, '.')
		}
		for _, p := range ps {
			if p.field == "" {
				b = append(b, p.literal...)
				continue
			}
			b = appendEscape(b, fieldValue(e, p.field))
		}
	}
	return b
}

// StreamSubject is the wildcard a stream needs to hold every subject the
// template renders for one cluster: the literal prefix, then ">".
func (s *Subject) StreamSubject(cluster string) string {
	var out []string
	for _, ps := range s.tokens {
		var b strings.Builder
		for _, p := range ps {
			switch p.field {
			case "":
				b.WriteString(p.literal)
			case "cluster":
				b.WriteString(escape(cluster))
			default:
				return strings.Join(append(out, ">"), ".")
			}
		}
		out = append(out, b.String())
	}
	return strings.Join(out, ".")
}

func fieldValue(e *event.Event, field string) string {
	group, version := "core", e.APIVersion
	if i := strings.IndexByte(e.APIVersion, '/'); i >= 0 {
		group, version = e.APIVersion[:i], e.APIVersion[i+1:]
	}
	switch field {
	case "cluster":
		return e.Cluster
	case "group":
		return group
	case "version":
		return version
	case "resource":
		return e.Resource
	case "namespace":
		return e.Namespace
	case "name":
		return e.Name
	case "kind":
		return e.Kind
	case "change":
		if c := e.Change(); c != "" {
			return string(c)
		}
		if event.IsSnapshotMarker(e.Type) {
			return "snapshot"
		}
		return "gap"
	}
	return ""
}

// escape makes a value one safe subject token: "" becomes "_", '.' becomes
// '_' (Kubernetes names, namespaces and groups never contain '_', so this is
// unambiguous for them), and any other byte that is not a letter, digit, '-'
// or '_' becomes %XX.
func escape(v string) string {
	for i := 0; i < len(v); i++ {
		if !plain(v[i]) {
			return string(appendEscape(nil, v))
		}
	}
	if v == "" {
		return "_"
	}
	return v
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func appendEscape(b []byte, v string) []byte {
	if v == "" {
		return append(b, '_')
	}
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '.':
			b = append(b, '_')
		case plain(c):
			b = append(b, c)
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return b
}

// Matches reports whether subject matches a NATS subject filter with * and >.
func Matches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}
