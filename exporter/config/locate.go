package config

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// locator maps a config path such as watch[2].labelSelector to a position in
// the parsed YAML document.
type locator struct {
	root *yaml.Node
}

// find returns the node at path, or the deepest node on the way there, so that
// a missing key is reported at its parent.
func (l locator) find(path string) *yaml.Node {
	n := l.root
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, part := range splitPath(path) {
		next := child(n, part)
		if next == nil {
			return n
		}
		n = next
	}
	return n
}

// keyOf returns the key node for path, so unknown or wrong keys point at the
// key rather than the value.
func (l locator) keyOf(path string) *yaml.Node {
	parts := splitPath(path)
	if len(parts) == 0 {
		return l.find(path)
	}
	parent := l.find(strings.Join(parts[:len(parts)-1], "."))
	if parent != nil && parent.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if parent.Content[i].Value == parts[len(parts)-1] {
				return parent.Content[i]
			}
		}
	}
	return l.find(path)
}

func child(n *yaml.Node, part string) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				return n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(part); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}

// splitPath turns "watch[2].sinks[0]" into [watch 2 sinks 0].
func splitPath(path string) []string {
	path = strings.NewReplacer("[", ".", "]", "").Replace(path)
	var out []string
	for _, p := range strings.Split(path, ".") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// PositionOf returns the line and column of the value at path (for example
// "watch[1].resource") in a YAML document, or zeros when it cannot be found.
func PositionOf(data []byte, path string) (int, int) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return 0, 0
	}
	n := locator{root: &root}.find(path)
	if n == nil {
		return 0, 0
	}
	return n.Line, n.Column
}
