package natsconn

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/sinks"
)

// Connect dials NATS. It does not fail when no server answers yet: the
// connection keeps trying in the background (RetryOnFailedConnect) and
// reconnects forever with jittered backoff.
func Connect(c Config, log *zap.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := options(c, log)
	if err != nil {
		return nil, err
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(strings.Join(c.Servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect to %s: %w", Redact(c.Servers), err)
	}
	return nc, nil
}

// How often the connection pings its server, and how many pings may go
// unanswered before it counts the server as gone.
const (
	pingInterval = 10 * time.Second
	maxPingsOut  = 2
)

// options turns the connection config into nats.go options.
func options(c Config, log *zap.Logger) ([]nats.Option, error) {
	if log == nil {
		log = zap.NewNop()
	}
	name := c.Name
	if name == "" {
		name = "kubefeed"
	}
	servers := Redact(c.Servers)
	opts := []nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.Timeout(5 * time.Second),
		// A server that stops answering (frozen, a half-open connection)
		// is given up after about 20-30 s and another node of the cluster
		// tried, rather than after nats.go's default of minutes.
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected; reconnecting", zap.String("servers", servers), zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", zap.String("server", sinks.SafeURL(nc.ConnectedUrl())))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("nats error", zap.Error(err))
		}),
	}
	switch {
	case c.User != "":
		pw, err := readSecret(c.PasswordFile, "passwordFile")
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(c.User, pw))
	case c.TokenFile != "":
		tok, err := readSecret(c.TokenFile, "tokenFile")
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(tok))
	case c.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nkeySeedFile: %w", err)
		}
		opts = append(opts, o)
	case c.CredentialsFile != "":
		if _, err := os.Stat(c.CredentialsFile); err != nil {
			return nil, fmt.Errorf("credentialsFile: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.CredentialsFile))
	}
	if t := c.TLS; t != nil {
		tc, err := sinks.TLSConfig(t)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

func readSecret(path, what string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%s is required", what)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Redact joins server URLs for logs and errors: scheme, host and port
// only (sinks.SafeURL), so user info and tokens in a URL never show.
func Redact(servers []string) string { return sinks.SafeURLs(servers) }
