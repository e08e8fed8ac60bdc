package kafka

import (
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/sinks"
)

// recordOverhead is what a record batch and one record add to the encoded
// event (batch header, record framing, key): the room kept below
// maxMessageBytes.
const recordOverhead = 512

// maxPublishRecords is the room kgo's buffer keeps beyond the window, for
// a publish of more records than the window holds (a gap marker to every
// partition of a large topic): it is handed over alone.
const maxPublishRecords = 10000

// ConnectOptions are the kgo options that reach the brokers as the sink
// does (brokers, client id, TLS, SASL), for a reader of its topics such as
// `kubefeed verify`. The password file is read now.
func ConnectOptions(c Config) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.ClientID)}
	if s := c.SASL; s != nil {
		m, err := mechanism(s)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	if c.TLS != nil {
		tc, err := sinks.TLSConfig(c.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

// clientOptions turns the config into kgo options. Secrets are read here,
// once, at start.
func clientOptions(c Config, window int, log *zap.Logger) ([]kgo.Opt, error) {
	opts, err := ConnectOptions(c)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.ProducerBatchMaxBytes(int32(c.MaxMessageBytes)),
		kgo.RecordPartitioner(partitioner{}),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
		// A key is done only when its records are acknowledged, and
		// lingering for more records (franz-go waits 10ms by default)
		// delays every ack by that much. Records produced while a request
		// is in flight are still batched together, which is where the
		// window's throughput comes from.
		kgo.ProducerLinger(0),
		// The window bounds what kgo buffers (maxInFlight records, or one
		// publish larger than that); kgo's own bound is only a backstop,
		// with room for such a publish.
		kgo.MaxBufferedRecords(window+maxPublishRecords),
		kgo.WithLogger(kgoLogger{log}),
	)
	if c.Acks == acksLeader {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	} else {
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	return opts, nil
}

func mechanism(s *SASL) (sasl.Mechanism, error) {
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("sasl.passwordFile: %w", err)
	}
	pass := strings.TrimRight(string(b), "\r\n")
	if pass == "" {
		return nil, fmt.Errorf("sasl.passwordFile %s is empty", s.PasswordFile)
	}
	switch s.Mechanism {
	case "PLAIN":
		return plain.Auth{User: s.User, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: s.User, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: s.User, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("sasl.mechanism %q: use one of %s", s.Mechanism, strings.Join(saslMechanisms, ", "))
}

// kgoLogger routes kgo's log into zap: its info (connections, metadata) at
// debug, warnings and errors as they are.
type kgoLogger struct{ log *zap.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Core().Enabled(zap.DebugLevel) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	fields := make([]zap.Field, 0, len(keyvals)/2)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fields = append(fields, zap.Any(fmt.Sprint(keyvals[i]), keyvals[i+1]))
	}
	switch level {
	case kgo.LogLevelError:
		l.log.Error(msg, fields...)
	case kgo.LogLevelWarn:
		l.log.Warn(msg, fields...)
	default:
		l.log.Debug(msg, fields...)
	}
}
