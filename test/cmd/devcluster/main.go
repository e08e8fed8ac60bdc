// Command devcluster starts and stops the developer's local control plane
// (make cluster-up / make cluster-down).
//
//	devcluster up DIR     start etcd and kube-apiserver in DIR, write DIR/kubeconfig
//	devcluster down DIR   kill what up started
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubefeed/kubefeed/test/cluster"
)

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: devcluster up|down DIR")
		os.Exit(1)
	}
	dir, err := filepath.Abs(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	switch os.Args[1] {
	case "up":
		// A cluster that is already up is stopped first: up always leaves one.
		_ = cluster.KillPIDFiles(dir)
		_ = os.RemoveAll(dir)
		cp, err := cluster.Start(cluster.Options{Dir: dir, Detach: true})
		if err != nil {
			_ = cluster.KillPIDFiles(dir)
			fmt.Fprintln(os.Stderr, "devcluster:", err)
			os.Exit(2)
		}
		fmt.Printf("control plane up at %s\nkubeconfig: %s\n", cp.APIServer().URL(), cp.Kubeconfig())
	case "down":
		if err := cluster.KillPIDFiles(dir); err != nil {
			fmt.Fprintln(os.Stderr, "devcluster:", err)
			os.Exit(2)
		}
		fmt.Println("control plane down")
	}
}
