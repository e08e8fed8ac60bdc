package app

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kubefeed/kubefeed/exporter/config"
)

func newTailCmd(g *globalFlags, stdout io.Writer) *cobra.Command {
	var (
		namespace     string
		allNamespaces bool
		labelSel      string
		fieldSel      string
		output        string
	)
	cmd := &cobra.Command{
		Use:   "tail RESOURCE [-n NS | -A] [-l SEL] [--field-selector SEL] [-o diff|json]",
		Short: "Stream the changes of one resource to the terminal",
		Example: `  kubefeed tail configmaps -A
  kubefeed tail deployments.apps -n shop -l app=web -o json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr(errors.New("tail needs exactly one RESOURCE, for example: kubefeed tail pods -A"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				output = "json"
				if f, ok := stdout.(*os.File); ok && isTerminal(f) {
					output = "diff"
				}
			}
			if output != "json" && output != "diff" {
				return usageErr(errors.New("-o must be diff or json"))
			}
			if allNamespaces && namespace != "" {
				return usageErr(errors.New("use -n or -A, not both"))
			}
			if g.logFormat == "json" && !cmd.Flags().Changed("log-format") {
				g.logFormat = "console"
			}
			if !cmd.Flags().Changed("log-level") {
				g.logLevel = "warn"
			}
			// The diff names who made each change (attribution: managers).
			w := config.Watch{Resource: args[0], LabelSelector: labelSel, FieldSelector: fieldSel, Attribution: config.AttributionManagers}
			if !allNamespaces {
				if namespace == "" {
					_, ns, err := clientConfig(g)
					if err != nil {
						return usageErr(err)
					}
					namespace = ns
				}
				w.Namespaces = []string{namespace}
			}
			cfg := &config.Config{
				APIVersion: config.APIVersion, Kind: config.Kind,
				Watch: []config.Watch{w},
				Sinks: []config.Sink{{Name: "stdout", Stdout: &config.StdoutSink{Format: output}}},
			}
			cfg.SetDefaults()
			cfg.Workers = 1
			if _, err := config.Parse("tail", mustYAML(cfg)); err != nil {
				return usageErr(err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runExporter(ctx, g, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "", "namespace (default: the kubeconfig context's)")
	f.BoolVarP(&allNamespaces, "all-namespaces", "A", false, "all namespaces")
	f.StringVarP(&labelSel, "selector", "l", "", "label selector")
	f.StringVar(&fieldSel, "field-selector", "", "field selector")
	f.StringVarP(&output, "output", "o", "", "diff (default on a terminal) or json (default when piped)")
	return cmd
}
