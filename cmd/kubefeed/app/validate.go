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

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

func newValidateCmd(g *globalFlags, stdout io.Writer) *cobra.Command {
	var cfgPath string
	var cluster bool
	enrich := append([]string(nil), defaultEnrichResources...)
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
				if err := checkCluster(cmd.Context(), g, cfgPath, cfg, enrich, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			fmt.Fprintf(stdout, "%s: ok\n", cfgPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the config file")
	cmd.Flags().BoolVar(&cluster, "cluster", false, "also resolve every resource and check list/watch permission")
	cmd.Flags().StringSliceVar(&enrich, "enrich-resources", enrich,
		"with --cluster and a rule that says enrich: involvedObject, the kinds Events point at to check list/watch on (the chart's enrich.resources)")
	return cmd
}

// checkCluster resolves each rule's resource and asks the API server
// (SelfSubjectAccessReview) whether kubefeed may list and watch it, and the
// same for the enrichment kinds when a rule enriches Events. Warnings go to
// warn; problems make the error.
func checkCluster(ctx context.Context, g *globalFlags, path string, cfg *config.Config, enrich []string, warn io.Writer) error {
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
	res := resource.NewDiscoveryResolver(cs.Discovery())
	problems, err := clusterProblems(ctx, cs, res, path, cfg)
	if err != nil {
		return err
	}
	more, warnings, err := enrichProblems(ctx, cs, res, path, cfg, enrich)
	if err != nil {
		return err
	}
	problems = append(problems, more...)
	locateProblems(path, warnings)
	for _, w := range warnings {
		fmt.Fprintln(warn, "warning:", w.String())
	}
	if len(problems) > 0 {
		locateProblems(path, problems)
		return usageErr(&config.Error{Problems: problems})
	}
	return nil
}

// clusterProblems resolves each rule's resource and checks list and watch
// on it where the rule's informers will use them.
func clusterProblems(ctx context.Context, cs kubernetes.Interface, res resource.Resolver, path string, cfg *config.Config) ([]config.Problem, error) {
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
			denied, err := listWatchDenied(ctx, cs, r, ns)
			if err != nil {
				return nil, err
			}
			for _, verb := range denied {
				problems = append(problems, config.Problem{File: path, Path: p, Msg: fmt.Sprintf("not allowed to %s %s %s", verb, r.GVR.Resource, namespacePhrase(ns))})
			}
		}
	}
	return problems, nil
}

// listWatchDenied asks the API server (SelfSubjectAccessReview) whether
// kubefeed may list and watch r in ns (metav1.NamespaceAll: every
// namespace) and returns the verbs it may not use.
func listWatchDenied(ctx context.Context, cs kubernetes.Interface, r resource.Resource, ns string) ([]string, error) {
	var denied []string
	for _, verb := range []string{"list", "watch"} {
		review := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Group: r.GVR.Group, Version: r.GVR.Version, Resource: r.GVR.Resource,
		}}}
		out, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return nil, runtimeErr(fmt.Errorf("access review: %w", err))
		}
		if !out.Status.Allowed {
			denied = append(denied, verb)
		}
	}
	return denied, nil
}

// namespacePhrase names a namespace of an access review for a message.
func namespacePhrase(ns string) string {
	if ns == metav1.NamespaceAll {
		return "in all namespaces"
	}
	return "in namespace " + ns
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
