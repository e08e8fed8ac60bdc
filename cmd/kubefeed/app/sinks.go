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
	"github.com/kubefeed/kubefeed/sinks/stdout"
	"github.com/kubefeed/kubefeed/sinks/webhook"
)

// buildSinks creates every sink of the config; on error the ones already
// built are closed by the caller through the returned map.
func buildSinks(ctx context.Context, cfg *config.Config, log *zap.Logger) (map[string]sinks.Sink, error) {
	out := map[string]sinks.Sink{}
	for _, sc := range cfg.Sinks {
		var s sinks.Sink
		switch {
		case sc.Stdout != nil:
			s = stdout.New(os.Stdout, stdout.Options{Format: sc.Stdout.Format, Color: sc.Stdout.Format == "diff" && isTerminal(os.Stdout)})
		case sc.File != nil:
			f, err := file.New(file.Options{Path: sc.File.Path, MaxSize: int64(sc.File.MaxSizeMB) << 20, MaxBackups: sc.File.MaxBackups})
			if err != nil {
				return out, fmt.Errorf("sink %s: %w", sc.Name, err)
			}
			s = f
		case sc.JetStream != nil:
			j, err := jetstream.New(ctx, jetstream.Options{Config: *sc.JetStream, Cluster: cfg.Cluster, Logger: log.Named("jetstream").With(zap.String("sink", sc.Name))})
			if err != nil {
				return out, fmt.Errorf("sink %s: %w", sc.Name, err)
			}
			s = j
		case sc.NATS != nil:
			n, err := natssink.New(natssink.Options{Config: *sc.NATS, Logger: log.Named("nats").With(zap.String("sink", sc.Name))})
			if err != nil {
				return out, fmt.Errorf("sink %s: %w", sc.Name, err)
			}
			s = n
		case sc.Kafka != nil:
			k, err := kafka.New(ctx, kafka.Options{Config: *sc.Kafka, Cluster: cfg.Cluster, Logger: log.Named("kafka").With(zap.String("sink", sc.Name))})
			if err != nil {
				return out, fmt.Errorf("sink %s: %w", sc.Name, err)
			}
			s = k
		case sc.Webhook != nil:
			w, err := webhook.New(webhook.Options{Config: *sc.Webhook, Logger: log.Named("webhook").With(zap.String("sink", sc.Name))})
			if err != nil {
				return out, fmt.Errorf("sink %s: %w", sc.Name, err)
			}
			s = w
		default:
			return out, fmt.Errorf("sink %s: this kind of sink is not available in this build", sc.Name)
		}
		if dl := sc.DeadLetter; dl != nil {
			w, err := deadletter.Wrap(s, deadletter.Options{Name: sc.Name, Path: dl.File, Logger: log.Named("deadletter").With(zap.String("sink", sc.Name))})
			if err != nil {
				_ = s.Close(ctx)
				return out, fmt.Errorf("sink %s: %w", sc.Name, err)
			}
			s = w
		}
		out[sc.Name] = s
	}
	return out, nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
