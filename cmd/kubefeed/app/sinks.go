package app

import (
	"context"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/deadletter"
	"github.com/kubefeed/kubefeed/sinks/file"
	"github.com/kubefeed/kubefeed/sinks/jetstream"
	"github.com/kubefeed/kubefeed/sinks/kafka"
	natssink "github.com/kubefeed/kubefeed/sinks/nats"
	"github.com/kubefeed/kubefeed/sinks/otlp"
	"github.com/kubefeed/kubefeed/sinks/stdout"
	"github.com/kubefeed/kubefeed/sinks/webhook"
)

// buildSinks creates every sink of the config. A sink that cannot be
// opened now (a broker down, a stream missing) does not stop the others: it
// is logged, reported by /readyz and the kubefeed_sink_ready metric, and
// opened again in the background (sinks.Deferred) while its queue waits.
func buildSinks(ctx context.Context, cfg *config.Config, log *zap.Logger) (map[string]sinks.Sink, error) {
	out := map[string]sinks.Sink{}
	for _, sc := range cfg.Sinks {
		open, err := sinkOpener(cfg, sc, log)
		if err != nil {
			return out, err
		}
		s, err := open(ctx)
		if err != nil {
			log.Error("sink cannot be opened; the other sinks deliver while it is retried", zap.String("sink", sc.Name), zap.Error(err))
			s = sinks.NewDeferred(sc.Name, err, open, sinks.DeferredOptions{Logger: log.Named("sink")})
		}
		out[sc.Name] = s
	}
	return out, nil
}

// sinkOpener returns how to open one configured sink, dead-letter file
// included.
func sinkOpener(cfg *config.Config, sc config.Sink, log *zap.Logger) (func(context.Context) (sinks.Sink, error), error) {
	var open func(ctx context.Context) (sinks.Sink, error)
	switch {
	case sc.Stdout != nil:
		open = func(context.Context) (sinks.Sink, error) {
			return stdout.New(os.Stdout, stdout.Options{Format: sc.Stdout.Format, Color: sc.Stdout.Format == stdout.FormatDiff && isTerminal(os.Stdout)}), nil
		}
	case sc.File != nil:
		open = func(context.Context) (sinks.Sink, error) {
			o := file.Options{Path: sc.File.Path, MaxSize: int64(sc.File.MaxSizeMB) << 20, MaxBackups: sc.File.MaxBackups}
			if sc.File.Linger != nil {
				o.Linger = sc.File.Linger.Duration
			}
			return file.New(o)
		}
	case sc.JetStream != nil:
		open = func(ctx context.Context) (sinks.Sink, error) {
			return jetstream.New(ctx, jetstream.Options{Config: *sc.JetStream, Cluster: cfg.Cluster, Logger: log.Named("jetstream").With(zap.String("sink", sc.Name))})
		}
	case sc.NATS != nil:
		open = func(context.Context) (sinks.Sink, error) {
			return natssink.New(natssink.Options{Config: *sc.NATS, Logger: log.Named("nats").With(zap.String("sink", sc.Name))})
		}
	case sc.Kafka != nil:
		open = func(ctx context.Context) (sinks.Sink, error) {
			return kafka.New(ctx, kafka.Options{Config: *sc.Kafka, Cluster: cfg.Cluster, Logger: log.Named("kafka").With(zap.String("sink", sc.Name))})
		}
	case sc.Webhook != nil:
		open = func(context.Context) (sinks.Sink, error) {
			return webhook.New(webhook.Options{Config: *sc.Webhook, Logger: log.Named("webhook").With(zap.String("sink", sc.Name))})
		}
	case sc.OTLP != nil:
		open = func(context.Context) (sinks.Sink, error) {
			return otlp.New(otlp.Options{Config: *sc.OTLP, Version: version, Logger: log.Named("otlp").With(zap.String("sink", sc.Name))})
		}
	default:
		return nil, fmt.Errorf("sink %s: this kind of sink is not available in this build", sc.Name)
	}
	return func(ctx context.Context) (sinks.Sink, error) {
		s, err := open(ctx)
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
		}
		if dl := sc.DeadLetter; dl != nil {
			w, err := deadletter.Wrap(s, deadletter.Options{Name: sc.Name, Path: dl.File, Logger: log.Named("deadletter").With(zap.String("sink", sc.Name))})
			if err != nil {
				_ = s.Close(ctx)
				return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
			}
			s = w
		}
		return s, nil
	}, nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
