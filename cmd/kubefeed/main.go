// Command kubefeed is a change feed for the Kubernetes API. See README.md.
package main

import (
	"os"

	"github.com/kubefeed/kubefeed/cmd/kubefeed/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
