package app

import (
	"fmt"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Client rate limits for a watcher: lists at start and relists come in
// bursts; client-go's defaults (5 QPS, burst 10) would throttle them.
const (
	clientQPS   = 50
	clientBurst = 100
)

// clientConfig resolves the kubeconfig as kubectl does: --kubeconfig,
// $KUBECONFIG, ~/.kube/config, then the in-cluster service account. It also
// returns the context's namespace.
func clientConfig(g *globalFlags) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = g.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: g.context}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	cfg.UserAgent = userAgent()
	cfg.QPS, cfg.Burst = clientQPS, clientBurst
	return cfg, ns, nil
}

// newLogger builds the zap logger and routes client-go's klog into it.
func newLogger(g *globalFlags) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageErr(fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel))
	}
	var zc zap.Config
	switch g.logFormat {
	case "json":
		zc = zap.NewProductionConfig()
	case "console":
		zc = zap.NewDevelopmentConfig()
	default:
		return nil, usageErr(fmt.Errorf("--log-format %q: use json or console", g.logFormat))
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.OutputPaths = []string{"stderr"}
	zc.DisableStacktrace = lvl > zapcore.DebugLevel
	l, err := zc.Build()
	if err != nil {
		return nil, usageErr(err)
	}
	klog.SetLogger(zapr.NewLogger(l.Named("client-go")))
	return l, nil
}
