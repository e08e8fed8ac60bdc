package main

// A JetStream cluster for the sharding rows (-sharding-cluster): the
// three-node cluster of test/natstest, which the e2e tests start through
// testing.TB; benchrun is no test, so clusterTB stands in for one.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// clusterTB is the part of testing.TB that natstest.StartCluster and the
// Cluster's stop use; any other method panics (the embedded TB is nil).
type clusterTB struct {
	testing.TB
	dir      string
	cleanups []func()
	failed   bool
}

// clusterFatal is what a Fatal of clusterTB panics with.
type clusterFatal struct{ msg string }

func (t *clusterTB) Helper()                 {}
func (t *clusterTB) Failed() bool            { return t.failed }
func (t *clusterTB) Cleanup(f func())        { t.cleanups = append(t.cleanups, f) }
func (t *clusterTB) Logf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (t *clusterTB) Fatal(args ...any) {
	t.failed = true
	panic(clusterFatal{fmt.Sprint(args...)})
}

func (t *clusterTB) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "nats-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// stop runs the cleanups, last first.
func (t *clusterTB) stop() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}

// startNATSCluster starts a three-node JetStream cluster under dir; stop
// kills it.
func startNATSCluster(dir string) (c *natstest.Cluster, stop func(), err error) {
	tb := &clusterTB{dir: dir}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(clusterFatal)
			if !ok {
				panic(r)
			}
			tb.stop()
			c, stop, err = nil, nil, errors.New("nats cluster: "+f.msg)
		}
	}()
	c = natstest.StartCluster(tb, 3)
	return c, tb.stop, nil
}

// natsPIDs finds the nats-server processes whose command lines name a
// path under dir.
func natsPIDs(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		var pid int
		if _, err := fmt.Sscan(ent.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if args := splitNUL(b); len(args) > 2 && filepath.Base(args[0]) == "nats-server" && hasPrefixPath(args[2], dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func splitNUL(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}

func hasPrefixPath(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && (len(rel) < 3 || rel[:3] != "../")
}
