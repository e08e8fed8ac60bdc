package app

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"
)

func userAgent() string {
	return fmt.Sprintf("kubefeed/%s (%s/%s) %s", version, runtime.GOOS, runtime.GOARCH, commit)
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(stdout, "kubefeed %s\ncommit: %s\ngo: %s\n", version, commit, runtime.Version())
			return nil
		},
	}
}
