package sinks

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Each sink package owns the block of the config file that configures it
// (a Config type with its YAML keys, SetDefaults and Validate); the config
// package (exporter/config) assembles the blocks into the file and turns
// their problems into file positions. This file holds what the blocks
// share.

// Problem is one thing wrong with a sink's config block, at a path relative
// to the block: "subject", "servers[1]", "provision.storage", or "" for the
// block itself. The config package reports it at the position of that path
// in the file.
type Problem struct {
	Path string
	// AtKey places the problem at the key that names Path rather than at
	// its value: for something missing from a block, or a rule about the
	// block as a whole.
	AtKey bool
	Msg   string
}

// Problems collects the problems of one block.
type Problems []Problem

// At adds a problem at the value of path.
func (ps *Problems) At(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// AtKey adds a problem at the key of path.
func (ps *Problems) AtKey(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, AtKey: true, Msg: fmt.Sprintf(format, args...)})
}

// Nest adds the problems of a block nested at path.
func (ps *Problems) Nest(path string, nested []Problem) {
	for _, p := range nested {
		p.Path = JoinPath(path, p.Path)
		*ps = append(*ps, p)
	}
}

// JoinPath joins a block's path and a path relative to it:
// JoinPath("sinks[0].kafka", "brokers[1]") is "sinks[0].kafka.brokers[1]".
func JoinPath(block, rel string) string {
	switch {
	case rel == "":
		return block
	case block == "" || strings.HasPrefix(rel, "["):
		return block + rel
	}
	return block + "." + rel
}

// ValidateMode checks a content mode (a block's "mode"): "" (the
// default), ModeStructured or ModeBinary.
func ValidateMode(mode string) []Problem {
	if mode != "" && mode != ModeStructured && mode != ModeBinary {
		return []Problem{{Msg: fmt.Sprintf("must be %s or %s, got %q", ModeStructured, ModeBinary, mode)}}
	}
	return nil
}

// ValidateTypes checks a naming of types (a block's "types"): "" (the
// default), TypesKubefeed or TypesKnative.
func ValidateTypes(types string) []Problem {
	if types != "" && types != TypesKubefeed && types != TypesKnative {
		return []Problem{{Msg: fmt.Sprintf("must be %s or %s, got %q", TypesKubefeed, TypesKnative, types)}}
	}
	return nil
}

// Duration is a time.Duration written as "30s", "10m".
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: bad duration %q: use a number with a unit, like 30s or 10m", n.Line, s)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %q is negative", n.Line, s)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
