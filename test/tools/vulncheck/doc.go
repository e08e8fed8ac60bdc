// Package vulncheck tests the offline vulnerability check that `make test`
// runs: test/tools/vulncheck.sh builds govulncheck and a Go vulnerability
// database in the v1 layout from the golang.org/x/vulndb module (gendb/, its
// own module), and govulncheck fails (exit 3) on a vulnerable symbol that the
// code can reach, not on one it merely imports. test/cmd/vulngate, which
// `make vulncheck` runs, fails on reachable findings that
// test/tools/vulncheck-accepted.txt does not list for their module.
package vulncheck
