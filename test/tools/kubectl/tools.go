//go:build tools

// Package tools pins the kubectl main package for 'go mod tidy'.
package tools

import _ "k8s.io/kubernetes/cmd/kubectl"
