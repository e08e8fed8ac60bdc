package app

import (
	"fmt"
	"os"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/file"
	"github.com/kubefeed/kubefeed/sinks/stdout"
)

// buildSinks creates every sink of the config; on error the ones already
// built are closed by the caller through the returned map.
func buildSinks(cfg *config.Config) (map[string]sinks.Sink, error) {
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
		default:
			return out, fmt.Errorf("sink %s: this kind of sink is not available in this build", sc.Name)
		}
		out[sc.Name] = s
	}
	return out, nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
