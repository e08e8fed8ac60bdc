//go:build tools

package main

// Pins govulncheck's version (go.mod) for test/tools/vulncheck.sh, which
// builds it from this module.
import _ "golang.org/x/vuln/cmd/govulncheck"
