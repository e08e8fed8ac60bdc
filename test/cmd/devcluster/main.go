// Command devcluster starts and stops the developer's local control plane
// (make cluster-up / make cluster-down).
//
//	devcluster up [-feature-gates G] DIR   start etcd and kube-apiserver in DIR, write DIR/kubeconfig
//	devcluster down DIR                    kill what up started
//
// -feature-gates (make cluster-up FEATURE_GATES=...) is passed to the API
// server as --feature-gates, e.g. ShardedListAndWatch=true; default none.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubefeed/kubefeed/test/cluster"
)

const usage = "usage: devcluster up [-feature-gates G] DIR | devcluster down DIR"

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(1)
	}
	fs := flag.NewFlagSet("devcluster "+os.Args[1], flag.ExitOnError)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, usage); fs.PrintDefaults() }
	var gates string
	if os.Args[1] == "up" {
		fs.StringVar(&gates, "feature-gates", "", "passed to kube-apiserver as --feature-gates (e.g. ShardedListAndWatch=true); empty: none")
	}
	_ = fs.Parse(os.Args[2:])
	if fs.NArg() != 1 {
		fs.Usage()
		os.Exit(1)
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	switch os.Args[1] {
	case "up":
		// A cluster that is already up is stopped first: up always leaves one.
		_ = cluster.KillPIDFiles(dir)
		_ = os.RemoveAll(dir)
		cp, err := cluster.Start(cluster.Options{Dir: dir, Detach: true, FeatureGates: gates})
		if err != nil {
			_ = cluster.KillPIDFiles(dir)
			fmt.Fprintln(os.Stderr, "devcluster:", err)
			os.Exit(2)
		}
		fmt.Printf("control plane up at %s\nkubeconfig: %s\n", cp.APIServer().URL(), cp.Kubeconfig())
		if gates != "" {
			fmt.Printf("feature gates: %s\n", gates)
		}
	case "down":
		if err := cluster.KillPIDFiles(dir); err != nil {
			fmt.Fprintln(os.Stderr, "devcluster:", err)
			os.Exit(2)
		}
		fmt.Println("control plane down")
	}
}
