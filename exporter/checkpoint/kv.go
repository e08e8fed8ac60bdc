package checkpoint

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// kvOpTimeout bounds one put or delete of a flush. A reply lost with its
// connection (a NATS node killed between the put and its ack) fails the
// flush after this instead of holding it, and every Sync waiting on it,
// for the whole flushTimeout; the records stay dirty and the next flush,
// on the new connection, writes them.
var kvOpTimeout = 5 * time.Second

// KV is the JetStream key-value backend, shared by replicas: the leader
// writes it, and a new leader resumes from it. Keys are
// "s.<sink>.<base64url of the object key>" and "m.<sink>" (last flush).
type KV struct {
	*committer
	log       *zap.Logger
	keepState bool
	nc        *nats.Conn
	kv        jetstream.KeyValue

	mu     sync.Mutex
	stores map[string]*Store
}

// OpenKV connects and creates the bucket if it does not exist, with
// c.Replicas replicas (unset: 1, and an existing bucket keeps its count).
func OpenKV(ctx context.Context, c config.JetStreamCheckpoint, keepState bool, log *zap.Logger) (*KV, error) {
	if log == nil {
		log = zap.NewNop()
	}
	nc, err := natsconn.Connect(c.NATSConnection, log)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	var last error // the last failure that is not the deadline: the server's reason
	for {
		var replicas int
		if replicas, err = bucketReplicas(ctx, js, c); err == nil {
			kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.Bucket, History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
		}
		if err != nil && ctx.Err() == nil {
			last = err
		}
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond) // the server may still be connecting
	}
	if err != nil && last != nil {
		err = fmt.Errorf("%w (the last answer: %v)", err, last)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("checkpoint bucket %s: %w", c.Bucket, err)
	}
	return &KV{committer: newCommitter(), log: log, keepState: keepState, nc: nc, kv: kv, stores: map[string]*Store{}}, nil
}

// bucketReplicas is the replica count to create or update the bucket
// with: the configured one, or when unset the existing bucket's (so that
// kubefeed does not scale down a bucket an operator made R3) or 1.
func bucketReplicas(ctx context.Context, js jetstream.JetStream, c config.JetStreamCheckpoint) (int, error) {
	if c.Replicas > 0 {
		return c.Replicas, nil
	}
	kv, err := js.KeyValue(ctx, c.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return 1, nil
	}
	if err != nil {
		return 0, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo().Config.Replicas > 0 {
		return bs.StreamInfo().Config.Replicas, nil
	}
	return 1, nil
}

func kvKey(sink string, k state.Key) string {
	return "s." + sink + "." + base64.RawURLEncoding.EncodeToString([]byte(keyString(k)))
}

// Store loads the checkpoint of one sink as it is now in the bucket.
func (b *KV) Store(ctx context.Context, sink string) (*Store, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := newStore()
	s.backend = b
	if err := b.loadInto(ctx, sink, s); err != nil {
		return nil, err
	}
	b.stores[sink] = s
	return s, nil
}

// Flushed reads when sink's records were last flushed, without reading
// them; false when they never were.
func (b *KV) Flushed(ctx context.Context, sink string) (time.Time, bool, error) {
	e, err := b.kv.Get(ctx, "m."+sink)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("checkpoint %s: %w", sink, err)
	}
	t, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		return time.Time{}, false, nil // unreadable: as never flushed
	}
	return t, true, nil
}

// FlushTimes reads when each store named "<sink>.…" (a shard's: sink's
// records of one layout) was last flushed, with one listing of the
// bucket's keys; stores never flushed are absent.
func (b *KV) FlushTimes(ctx context.Context, sink string) (map[string]time.Time, error) {
	l, err := b.kv.ListKeysFiltered(ctx, "m."+sink+".>")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", sink, err)
	}
	var names []string
	for k := range l.Keys() {
		names = append(names, strings.TrimPrefix(k, "m."))
	}
	_ = l.Stop() // done already once Keys closed
	out := make(map[string]time.Time, len(names))
	for _, name := range names {
		if t, ok, err := b.Flushed(ctx, name); err != nil {
			return nil, err
		} else if ok {
			out[name] = t
		}
	}
	return out, nil
}

// loadInto reads sink's records and last flush time as they are now in
// the bucket into s.
func (b *KV) loadInto(ctx context.Context, sink string, s *Store) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if e, err := b.kv.Get(ctx, "m."+sink); err == nil {
		b.applyEntry(map[string]*Store{sink: s}, e)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("checkpoint %s: %w", sink, err)
	}
	w, err := b.kv.Watch(ctx, "s."+sink+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", sink, err)
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			return nil // all current values seen
		}
		b.applyEntry(map[string]*Store{sink: s}, e)
	}
	return fmt.Errorf("checkpoint %s: %w", sink, ctx.Err())
}

// applyEntry applies one entry of the bucket to the store of its sink
// among stores: a record put or deleted, or the time of a flush. Entries
// of other sinks are ignored; an unreadable record is skipped and
// counted.
func (b *KV) applyEntry(stores map[string]*Store, e jetstream.KeyValueEntry) {
	key := e.Key()
	if sink, ok := strings.CutPrefix(key, "m."); ok {
		if s := stores[sink]; s != nil && e.Operation() == jetstream.KeyValuePut {
			if t, err := time.Parse(time.RFC3339Nano, string(e.Value())); err == nil {
				s.setRestored(t)
			}
		}
		return
	}
	rest, ok := strings.CutPrefix(key, "s.")
	dot := strings.LastIndexByte(rest, '.')
	if !ok || dot < 0 {
		return
	}
	sink, enc := rest[:dot], rest[dot+1:]
	s := stores[sink]
	if s == nil {
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	var k state.Key
	if err == nil {
		k, err = parseKey(string(raw))
	}
	if err == nil && e.Operation() != jetstream.KeyValuePut {
		s.unload(k)
		return
	}
	var r state.Record
	var legacy bool
	if err == nil {
		r, legacy, err = decodeRecord(e.Value())
	}
	if err != nil {
		b.log.Error("skipping unreadable checkpoint record", zap.String("sink", sink), zap.String("key", key), zap.Error(err))
		b.skipped.Add(1)
		return
	}
	s.load(k, r, legacy)
}

// Run flushes every FlushInterval, and at once when Sync asks, until ctx
// ends; Close writes what is left.
func (b *KV) Run(ctx context.Context) error { return b.loop(ctx, b.Flush, b.log) }

// kvPermanent tells the refusals no retry can fix: a value over the
// server's max_payload or the stream's max message size, a bad key.
func kvPermanent(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrInvalidKey) || errors.Is(err, nats.ErrBadSubject) ||
		(errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum)
}

// valueLimit is the largest value the server takes in one message.
func (b *KV) valueLimit() int {
	limit := b.nc.MaxPayload()
	if limit <= 0 {
		limit = 1 << 20 // not connected yet: the server default
	}
	// The subject travels in the same message on the wire, but
	// max_payload counts data and headers only; keep a margin for
	// headers the client may add.
	return int(limit) - 256
}

// Flush writes every dirty record of every sink, within ctx and
// flushTimeout. A record the server refuses is stored shrunk or skipped
// (see write); after a transient failure (server down) the remaining
// records are not tried and everything not written stays dirty.
func (b *KV) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	seq, start := b.begin()
	ctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	var firstErr error
	for name, s := range b.stores {
		batch := s.takeDirty()
		failed := map[state.Key]dirty{}
		for k, d := range batch {
			if firstErr != nil {
				failed[k] = d
				continue
			}
			key := kvKey(name, k)
			var err error
			if d.rec == nil {
				if err = b.opDelete(ctx, key); err != nil && kvPermanent(err) {
					err = nil // nothing can be stored under that key either
				}
				if err == nil {
					b.unnote(name + " " + keyString(k))
				}
			} else {
				w := recordWriter{
					put:       func(v []byte) error { return b.opPut(ctx, key, v) },
					permanent: kvPermanent,
					limit:     b.valueLimit(),
				}
				err = b.write(w, b.log, name, k, d, b.keepState)
			}
			if err != nil {
				failed[k] = d
				firstErr = fmt.Errorf("sink %s: %w", name, err)
			}
		}
		if len(failed) > 0 {
			s.requeue(failed)
			continue
		}
		if err := b.opPut(ctx, "m."+name, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("sink %s: %w", name, err)
		}
	}
	b.flushed(seq, start, firstErr)
	if firstErr != nil {
		return fmt.Errorf("checkpoint flush: %w", firstErr)
	}
	return nil
}

// opPut puts one value within kvOpTimeout.
func (b *KV) opPut(ctx context.Context, key string, v []byte) error {
	ctx, cancel := context.WithTimeout(ctx, kvOpTimeout)
	defer cancel()
	_, err := b.kv.Put(ctx, key, v)
	return err
}

// opDelete deletes one key within kvOpTimeout.
func (b *KV) opDelete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, kvOpTimeout)
	defer cancel()
	return b.kv.Delete(ctx, key)
}

// Close flushes (within closeTimeout) and disconnects.
func (b *KV) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := b.Flush(ctx)
	b.nc.Close()
	return err
}
