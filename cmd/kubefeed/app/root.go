// Package app is the kubefeed command line: run, tail, validate, verify,
// version. Exit codes: 0 ok, 1 bad config or usage, 2 runtime failure, 3
// verify found differences.
package app

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Set at build time with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes.
const (
	exitOK      = 0
	exitConfig  = 1
	exitRuntime = 2
	exitDiffer  = 3 // verify: the feed and the cluster differ
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(err error) error   { return &exitError{code: exitConfig, err: err} }
func runtimeErr(err error) error { return &exitError{code: exitRuntime, err: err} }

// globalFlags are shared by the commands that talk to a cluster.
type globalFlags struct {
	kubeconfig string
	context    string
	logLevel   string
	logFormat  string
}

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "kubefeed",
		Short:         "A change feed for the Kubernetes API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)")
	pf.StringVar(&g.context, "context", "", "the kubeconfig context to use")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "json", "log format: json or console")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(newRunCmd(g), newTailCmd(g, stdout), newValidateCmd(g, stdout), newVerifyCmd(g, stdout), newSnapshotCmd(g, stdout), newVersionCmd(stdout))

	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "kubefeed:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// cobra's own errors (unknown command, bad args) are usage errors.
	return exitConfig
}
