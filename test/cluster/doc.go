// Package cluster runs a real local Kubernetes control plane (etcd and
// kube-apiserver, built by test/tools/build.sh from the Go module proxy) on
// free loopback ports, for tests, benchmarks and the developer cluster.
//
// Guarantees:
//   - Start returns only once /readyz answers 200 and an admin client works;
//     on failure it returns the tail of the process log.
//   - Every process is started in its own process group and killed by PID on
//     Stop (or t.Cleanup with StartT); processes started for tests also die
//     with the test binary (Pdeathsig).
//   - RestartAPIServer SIGKILLs the API server and starts it again on the same
//     port, so clients see a hard outage, and its watch cache is empty again.
//   - Compact forces an etcd compaction at the current revision, so a watch
//     from an older resourceVersion gets 410 Gone when the watch cache is off.
//
// The admin user (token in the kubeconfig) is in system:masters and may
// impersonate anyone, which the RBAC tests use to act as a ServiceAccount.
package cluster
