package checkpoint

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/test/natstest"
)

// muteProxy forwards TCP to target; while muted it swallows what the
// server sends (its acks) and keeps the connection open, as a node that
// died after it took a put but before its ack left.
type muteProxy struct {
	ln    net.Listener
	muted atomic.Bool
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startMuteProxy(t *testing.T, target string) *muteProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &muteProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(s, c) }()
			go func() {
				defer p.wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && !p.muted.Load() {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// TestKVLostAckFailsFlushFast: a put whose ack never comes fails the
// flush after kvOpTimeout, not flushTimeout (30s): Sync, which sends of
// new objects wait for, is not held. The record stays dirty and lands
// once acks flow again.
func TestKVLostAckFailsFlushFast(t *testing.T) {
	defer func(d time.Duration) { kvOpTimeout = d }(kvOpTimeout)
	kvOpTimeout = 300 * time.Millisecond
	srv := natstest.StartT(t, natstest.Options{})
	p := startMuteProxy(t, strings.TrimPrefix(srv.URL(), "nats://"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := config.JetStreamCheckpoint{NATSConnection: config.NATSConnection{Servers: []string{"nats://" + p.ln.Addr().String()}}, Bucket: "cp"}
	kv, err := OpenKV(ctx, c, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	s, err := kv.Store(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	p.muted.Store(true)
	s.Put(cmKey("a"), configMap("a", "v"))
	start := time.Now()
	if err := kv.Flush(ctx); err == nil {
		t.Fatal("flush without acks: no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("flush without acks took %v, want about kvOpTimeout (%v)", d, kvOpTimeout)
	}
	p.muted.Store(false)
	if err := kv.Flush(ctx); err != nil {
		t.Fatalf("flush once acks flow again: %v", err)
	}
	if _, ok := kvRecords(t, srv.URL(), "cp")[keyString(cmKey("a"))]; !ok {
		t.Error("record a not written after the lost ack")
	}
}
