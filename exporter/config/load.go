package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads, decodes, defaults and validates a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes, defaults and validates a config; file names it in errors.
// The error, when not nil, is an *Error listing every problem.
func Parse(file string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Problems: []Problem{yamlProblem(file, err.Error())}}
	}
	if len(root.Content) == 0 {
		return nil, &Error{Problems: []Problem{{File: file, Msg: "empty config: expected apiVersion: " + APIVersion + ", kind: " + Kind}}}
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			ps := make([]Problem, 0, len(te.Errors))
			for _, e := range te.Errors {
				ps = append(ps, decodeProblem(file, &root, e))
			}
			return nil, &Error{Problems: ps}
		}
		return nil, &Error{Problems: []Problem{yamlProblem(file, err.Error())}}
	}
	v := validator{file: file, loc: locator{root: &root}}
	cfg.SetDefaults()
	v.config(&cfg)
	if len(v.problems) > 0 {
		return nil, &Error{Problems: v.problems}
	}
	return &cfg, nil
}

var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
var unknownFieldRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

// yamlProblem turns a yaml syntax error ("yaml: line 3: ...") into a Problem.
func yamlProblem(file, msg string) Problem {
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: line, Column: 1, Msg: m[2]}
	}
	return Problem{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// decodeProblem turns one of yaml's decode errors into a Problem, naming
// unknown keys plainly and pointing at their column.
func decodeProblem(file string, root *yaml.Node, msg string) Problem {
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return Problem{File: file, Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	p := Problem{File: file, Line: line, Column: 1, Msg: m[2]}
	if f := unknownFieldRe.FindStringSubmatch(m[2]); f != nil {
		p.Msg = fmt.Sprintf("unknown key %q", f[1])
		if k := findKey(root, line, f[1]); k != nil {
			p.Column = k.Column
		}
	} else if col := valueColumnOnLine(root, line); col > 0 {
		p.Column = col
	}
	p.Msg = strings.Replace(p.Msg, "cannot unmarshal !!", "wrong type: got !!", 1)
	return p
}

func findKey(n *yaml.Node, line int, name string) *yaml.Node {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Line == line && k.Value == name {
				return k
			}
		}
	}
	for _, c := range n.Content {
		if k := findKey(c, line, name); k != nil {
			return k
		}
	}
	return nil
}

// valueColumnOnLine finds the column of the value on a line (type errors are
// about values, not keys).
func valueColumnOnLine(n *yaml.Node, line int) int {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := n.Content[i+1]; v.Line == line && v.Kind == yaml.ScalarNode {
				return v.Column
			}
		}
	}
	if n.Kind == yaml.SequenceNode {
		for _, v := range n.Content {
			if v.Line == line && v.Kind == yaml.ScalarNode {
				return v.Column
			}
		}
	}
	for _, c := range n.Content {
		if col := valueColumnOnLine(c, line); col > 0 {
			return col
		}
	}
	return 0
}
