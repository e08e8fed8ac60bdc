// Command democtl is the few kubectl verbs the demo needs (apply, patch,
// patch-status, delete), so `make demo` runs on a machine without kubectl.
// It reads $KUBECONFIG.
//
//	democtl apply FILE
//	democtl delete FILE
//	democtl patch RESOURCE NAMESPACE NAME MERGE-PATCH
//	democtl patch-status RESOURCE NAMESPACE NAME MERGE-PATCH
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kubefeed/kubefeed/exporter/resource"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "democtl:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: democtl apply|delete FILE | patch|patch-status RESOURCE NS NAME PATCH")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		return err
	}
	dyn := dynamic.NewForConfigOrDie(rc)
	res := resource.NewDiscoveryResolver(discovery.NewDiscoveryClientForConfigOrDie(rc))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch args[0] {
	case "apply", "delete":
		objs, err := readObjects(args[1])
		if err != nil {
			return err
		}
		for _, o := range objs {
			r, err := resolveRetry(res, o.GetObjectKind().GroupVersionKind().Kind, o.GetAPIVersion())
			if err != nil {
				return err
			}
			client := dyn.Resource(r.GVR).Namespace(o.GetNamespace())
			if args[0] == "delete" {
				if err := client.Delete(ctx, o.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
				fmt.Printf("%s/%s deleted\n", r.GVR.Resource, o.GetName())
				continue
			}
			if _, err := client.Create(ctx, o, metav1.CreateOptions{}); err != nil {
				if !apierrors.IsAlreadyExists(err) {
					return err
				}
			}
			fmt.Printf("%s/%s applied\n", r.GVR.Resource, o.GetName())
		}
	case "patch", "patch-status":
		if len(args) != 5 {
			return errors.New("usage: democtl patch RESOURCE NS NAME PATCH")
		}
		r, err := res.Resolve(args[1])
		if err != nil {
			return err
		}
		var sub []string
		if args[0] == "patch-status" {
			sub = []string{"status"}
		}
		if _, err := dyn.Resource(r.GVR).Namespace(args[2]).Patch(ctx, args[3], types.MergePatchType, []byte(args[4]), metav1.PatchOptions{}, sub...); err != nil {
			return err
		}
		fmt.Printf("%s/%s patched\n", r.GVR.Resource, args[3])
	default:
		return fmt.Errorf("unknown verb %q", args[0])
	}
	return nil
}

// resolveRetry waits for a kind to be served (a CRD just created).
func resolveRetry(res *resource.DiscoveryResolver, kind, apiVersion string) (resource.Resource, error) {
	name := kind
	if gv, err := schemaGroup(apiVersion); err == nil && gv != "" {
		name = kind + "." + gv
	}
	var lastErr error
	for i := 0; i < 100; i++ {
		r, err := res.Resolve(name)
		if err == nil {
			return r, nil
		}
		lastErr = err
		res.Reset()
		time.Sleep(100 * time.Millisecond)
	}
	return resource.Resource{}, lastErr
}

func schemaGroup(apiVersion string) (string, error) {
	for i := 0; i < len(apiVersion); i++ {
		if apiVersion[i] == '/' {
			return apiVersion[:i], nil
		}
	}
	return "", nil
}

func readObjects(path string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}
