// Package natstest runs a real nats-server with JetStream inside the test
// process, on a free loopback port with a temp store, restartable on the same
// port and store to simulate outages.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/test/freeport"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded nats-server.
type Server struct {
	opts *server.Options
	srv  *server.Server
	log  *ringLog
}

// Options tweak the server; the zero value is JetStream on a free port.
type Options struct {
	// StoreDir for JetStream; empty: a temp dir of the test.
	StoreDir string
	// MaxPayload in bytes; 0: the server default (1 MiB).
	MaxPayload int32
	// Configure, when set, changes the server options before start (auth, TLS).
	Configure func(*server.Options)
}

// StartT starts a server and shuts it down on t.Cleanup.
func StartT(t testing.TB, o Options) *Server {
	t.Helper()
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	s, err := Start(o)
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(s.Shutdown)
	// Runs before Shutdown (cleanups run last first): a failed test shows
	// what the server warned about, which its API errors often leave out
	// ("error creating store for stream" without the reason).
	t.Cleanup(func() {
		if t.Failed() {
			if said := s.log.String(); said != "" {
				t.Logf("nats-server warnings and errors:\n%s", said)
			}
		}
	})
	return s
}

// Start starts a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "kubefeed-test",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		MaxPayload: o.MaxPayload,
		NoSigs:     true,
		NoLog:      true,
	}
	if o.Configure != nil {
		o.Configure(opts)
	}
	s := &Server{opts: opts, log: &ringLog{}}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	srv, err := server.NewServer(s.opts)
	if err != nil {
		return fmt.Errorf("nats-server options: %w", err)
	}
	srv.SetLogger(s.log, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("nats-server on port %d not ready", s.opts.Port)
	}
	s.srv = srv
	return nil
}

// URL is the client URL (nats://127.0.0.1:port).
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port) }

// Port is the client port.
func (s *Server) Port() int { return s.opts.Port }

// Shutdown stops the server; Restart can start it again.
func (s *Server) Shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Restart starts a stopped server again on the same port and store.
func (s *Server) Restart() error {
	s.Shutdown()
	return s.start()
}

// ringLog keeps the server's last warnings and errors; notices, debug and
// trace lines are dropped.
type ringLog struct {
	mu    sync.Mutex
	lines []string
}

const ringLogLines = 64

func (l *ringLog) add(level, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == ringLogLines {
		l.lines = append(l.lines[:0], l.lines[1:]...)
	}
	l.lines = append(l.lines, time.Now().Format("15:04:05.000")+" "+level+" "+fmt.Sprintf(format, v...))
}

func (l *ringLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *ringLog) Noticef(string, ...any)         {}
func (l *ringLog) Debugf(string, ...any)          {}
func (l *ringLog) Tracef(string, ...any)          {}
func (l *ringLog) Warnf(format string, v ...any)  { l.add("WRN", format, v...) }
func (l *ringLog) Errorf(format string, v ...any) { l.add("ERR", format, v...) }
func (l *ringLog) Fatalf(format string, v ...any) { l.add("FTL", format, v...) }

// ReadStream returns every message a stream holds, in order, with headers.
// A missing stream reads as empty.
func ReadStream(url, stream string) ([]*nats.Msg, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*nats.Msg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return out, nil
}

// JetStream connects to url (with opts) for the test, closes the
// connection on t.Cleanup, and returns its JetStream context.
func JetStream(t testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// StreamReplicas is the replica count of the stream at url (a KV bucket's
// stream is "KV_<bucket>").
func StreamReplicas(t testing.TB, url, stream string) int {
	t.Helper()
	js := JetStream(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	return st.CachedInfo().Config.Replicas
}
