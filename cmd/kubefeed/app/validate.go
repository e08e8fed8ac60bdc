package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/exporter"
	"github.com/kubefeed/kubefeed/exporter/config"
)

func newValidateCmd(g *globalFlags, stdout io.Writer) *cobra.Command {
	var cfgPath string
	var cluster bool
	cmd := &cobra.Command{
		Use:   "validate --config FILE [--cluster]",
		Short: "Check a config; --cluster also resolves resources and checks list/watch permission",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			if cluster {
				if err := checkCluster(cmd.Context(), g, cfgPath, cfg); err != nil {
					return err
				}
			}
			fmt.Fprintf(stdout, "%s: ok\n", cfgPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the config file")
	cmd.Flags().BoolVar(&cluster, "cluster", false, "also resolve every resource and check list/watch permission")
	return cmd
}

// checkCluster resolves each rule's resource and asks the API server
// (SelfSubjectAccessReview) whether kubefeed may list and watch it.
func checkCluster(ctx context.Context, g *globalFlags, path string, cfg *config.Config) error {
	rc, _, err := clientConfig(g)
	if err != nil {
		return usageErr(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return runtimeErr(err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res := exporter.NewDiscoveryResolver(cs.Discovery())
	var problems []config.Problem
	for i, w := range cfg.Watch {
		p := fmt.Sprintf("watch[%d].resource", i)
		r, err := res.Resolve(w.Resource)
		if err != nil {
			problems = append(problems, config.Problem{File: path, Path: p, Msg: err.Error()})
			continue
		}
		nss := w.Namespaces
		if len(nss) == 0 || !r.Namespaced {
			nss = []string{""}
		}
		for _, ns := range nss {
			for _, verb := range []string{"list", "watch"} {
				review := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
					Namespace: ns, Verb: verb, Group: r.GVR.Group, Version: r.GVR.Version, Resource: r.GVR.Resource,
				}}}
				out, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
				if err != nil {
					return runtimeErr(fmt.Errorf("access review: %w", err))
				}
				if !out.Status.Allowed {
					where := "in all namespaces"
					if ns != "" {
						where = "in namespace " + ns
					}
					problems = append(problems, config.Problem{File: path, Path: p, Msg: fmt.Sprintf("not allowed to %s %s %s", verb, r.GVR.Resource, where)})
				}
			}
		}
	}
	if len(problems) > 0 {
		locateProblems(path, problems)
		return usageErr(&config.Error{Problems: problems})
	}
	return nil
}

// mustYAML renders a config built in code, so it goes through the same
// validation as a file.
func mustYAML(c *config.Config) []byte {
	b, err := yaml.Marshal(c)
	if err != nil {
		panic(err) // only plain structs: cannot fail
	}
	return b
}

func locateProblems(path string, ps []config.Problem) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for i := range ps {
		ps[i].Line, ps[i].Column = config.PositionOf(data, ps[i].Path)
	}
}
