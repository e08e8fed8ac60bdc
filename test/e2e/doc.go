// Package e2e runs kubefeed's pipeline against a real kube-apiserver and etcd
// (test/cluster) and, for the NATS sinks, a real nats-server. One control
// plane serves the whole package; every test works in namespaces of its own.
package e2e
