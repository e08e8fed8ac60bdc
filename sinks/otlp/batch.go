package otlp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// errClosed fails a publish after Close, and requests Close gave up on.
var errClosed = errors.New("otlp sink: closed")

// errNotSent fails (retryably) the entries of a request left unsent
// because an entry it shares failed in an earlier request.
var errNotSent = errors.New("otlp: not sent, an earlier request of the same objects failed")

// maxIsolated bounds the objects remembered to be sent alone (the set is
// emptied past it: they are then batched again, which only costs another
// round of isolation).
const maxIsolated = 1 << 14

// entry is one Publish: one object's events and their callback. alone
// entries are sent in a request of their own (isolated below).
type entry struct {
	events []*event.Event
	done   func(error)
	alone  bool
}

// batcher collects publishes of different objects into export requests
// of up to batch log records and maxRequestBytes, sent when full or
// linger after their first record. At most maxInFlight requests run at
// once, and at most batch×maxInFlight objects wait or are in flight
// (Publish blocks beyond that).
//
// A request the receiver refused for good (a permanent error, or a
// partial success that rejected records) does not say which of its
// objects were at fault: when it held several, each of them fails
// retryably and is remembered, and its retry goes in a request of its
// own, whose answer is then that object's alone. The objects that were
// accepted are sent twice (at least once; the ids tell duplicates).
type batcher struct {
	s      *Sink
	batch  int
	linger time.Duration
	budget int // bytes of log records per request
	sizer  plog.ProtoMarshaler
	// keys bounds the objects collected or in flight; requests bounds the
	// requests in flight.
	keys, requests *sinks.Window

	mu      sync.Mutex
	cur     []entry
	records int
	timer   *time.Timer
	closed  bool

	isoMu    sync.Mutex
	isolated map[string]struct{} // partition keys (uids) sent alone next time

	// ctx ends when Close gives up waiting; wg counts request goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Per request, what the records do not account for: the request's and
// each resource group's framing and attributes.
const (
	requestOverhead = 4 << 10
	groupOverhead   = 512
)

func newBatcher(s *Sink) *batcher {
	b := &batcher{
		s: s, batch: max(s.cfg.Batch, 1), linger: s.cfg.Linger.Duration,
		budget:   s.cfg.MaxRequestBytes - requestOverhead,
		isolated: map[string]struct{}{},
	}
	if b.linger <= 0 {
		b.linger = defaultLinger
	}
	inflight := max(s.cfg.MaxInFlight, 1)
	b.keys = sinks.NewWindow(b.batch * inflight)
	b.requests = sinks.NewWindow(inflight)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// Publish hands one object's events to the next request and returns;
// done gets that request's outcome for them. It blocks while
// batch×maxInFlight objects are collected or in flight.
func (s *Sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	b := s.batcher
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return sinks.Permanent(errClosed)
	}
	if err := b.keys.Acquire(ctx, 1); errors.Is(err, sinks.ErrWindowClosed) {
		return sinks.Permanent(errClosed)
	} else if err != nil {
		return fmt.Errorf("waiting for the send window: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.keys.Release(1)
		return sinks.Permanent(errClosed)
	}
	e := entry{events: events, done: done, alone: b.isIsolated(events)}
	if e.alone || b.batch <= 1 {
		b.start([]entry{e})
		return nil
	}
	if b.records > 0 && b.records+len(events) > b.batch {
		b.flushLocked()
	}
	b.cur = append(b.cur, e)
	b.records += len(events)
	switch {
	case b.records >= b.batch:
		b.flushLocked()
	case b.timer == nil:
		b.timer = time.AfterFunc(b.linger, b.flush)
	}
	return nil
}

func (b *batcher) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

// flushLocked starts a request with the collected entries.
func (b *batcher) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.cur) == 0 {
		return
	}
	entries := b.cur
	b.cur, b.records = nil, 0
	b.start(entries)
}

// start sends entries on a goroutine of its own once a request slot is
// free; the goroutines are bounded by the key window.
func (b *batcher) start(entries []entry) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		errs := b.send(entries)
		for i, e := range entries {
			if e.alone {
				b.unisolate(e.events)
			}
			b.keys.Release(1)
			e.done(errs[i])
		}
	}()
}

// chunk is one export request being built: its records grouped by
// resource, and the entries that have records in it.
type chunk struct {
	logs    plog.Logs
	groups  map[string]plog.LogRecordSlice
	entries []int
	records int
	bytes   int
}

// send exports the entries' events in as many requests as the batch
// size and the byte budget need, one after the other; it returns each
// entry's outcome.
func (b *batcher) send(entries []entry) []error {
	errs := make([]error, len(entries))
	if err := b.requests.Acquire(b.ctx, 1); err != nil {
		for i := range errs {
			errs[i] = errClosed // Close gave up waiting
		}
		return errs
	}
	defer b.requests.Release(1)
	chunks := b.build(entries, errs)
	for _, c := range chunks {
		// A request that holds an entry already failed is not sent: the
		// entry's later events would reach the receiver before the
		// retry brings its earlier ones again. Its other entries go
		// again with their retry.
		if slices.ContainsFunc(c.entries, func(i int) bool { return errs[i] != nil }) {
			for _, i := range c.entries {
				if errs[i] == nil {
					errs[i] = errNotSent
				}
			}
			continue
		}
		err := b.judge(c, entries, b.export(c))
		for _, i := range c.entries {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	return errs
}

// build encodes the entries into requests. An entry whose event cannot be
// sent even shrunk fails permanently, and sends nothing.
func (b *batcher) build(entries []entry, errs []error) []*chunk {
	var chunks []*chunk
	var cur *chunk
	sh := b.s.shape
	for i, en := range entries {
		records := make([]plog.LogRecord, len(en.events))
		sizes := make([]int, len(en.events))
		for j, ev := range en.events {
			lr, size, err := b.encode(ev)
			if err != nil {
				errs[i] = err
				break
			}
			records[j], sizes[j] = lr, size
		}
		if errs[i] != nil {
			continue
		}
		for j, ev := range en.events {
			key := sh.resourceKey(ev)
			need := sizes[j]
			if cur == nil || !hasGroup(cur, key) {
				need += groupOverhead
			}
			if cur == nil || cur.records+1 > b.batch || (cur.records > 0 && cur.bytes+need > b.budget) {
				cur = &chunk{logs: plog.NewLogs(), groups: map[string]plog.LogRecordSlice{}}
				chunks = append(chunks, cur)
				need = sizes[j] + groupOverhead
			}
			recs, ok := cur.groups[key]
			if !ok {
				rl := cur.logs.ResourceLogs().AppendEmpty()
				sh.resource(rl.Resource().Attributes(), ev)
				sl := rl.ScopeLogs().AppendEmpty()
				sh.scope(sl.Scope())
				recs = sl.LogRecords()
				cur.groups[key] = recs
			}
			records[j].MoveTo(recs.AppendEmpty())
			cur.records++
			cur.bytes += need
			if n := len(cur.entries); n == 0 || cur.entries[n-1] != i {
				cur.entries = append(cur.entries, i)
			}
		}
	}
	return chunks
}

func hasGroup(c *chunk, key string) bool {
	_, ok := c.groups[key]
	return ok
}

// encode encodes one event into a record, shrunk as sinks.Encode shrinks
// events (data.oldObject dropped, then data.object reduced to its
// identity) when it does not fit a request.
func (b *batcher) encode(ev *event.Event) (plog.LogRecord, int, error) {
	one := func(ev *event.Event) (plog.LogRecord, int) {
		lr := plog.NewLogRecord()
		b.s.shape.record(lr, ev)
		return lr, b.sizer.LogRecordSize(lr) + 8
	}
	lr, size := one(ev)
	limit := b.budget - groupOverhead
	if size <= limit {
		return lr, size, nil
	}
	first := size
	if d, ok := ev.Data.(*event.ChangeData); ok {
		for _, level := range []string{sinks.TruncatedOldObject, sinks.TruncatedObject} {
			if level == sinks.TruncatedOldObject && d.OldObject == nil {
				continue
			}
			if lr, size = one(sinks.Truncate(ev, level)); size <= limit {
				return lr, size, nil
			}
		}
	}
	return plog.LogRecord{}, 0, sinks.Permanent(fmt.Errorf("event %s: %w: %d bytes as a log record (%d after shrinking), maxRequestBytes %d",
		ev.ID, sinks.ErrTooLarge, first, size, b.s.cfg.MaxRequestBytes))
}

// export sends one request and returns the receiver's verdict: nil, a
// rejectedError, or the classified error.
func (b *batcher) export(c *chunk) error {
	ctx, cancel := context.WithTimeout(b.ctx, b.s.cfg.Timeout.Duration)
	defer cancel()
	rejected, msg, err := b.s.client.export(ctx, plogotlp.NewExportRequestFromLogs(c.logs))
	switch {
	case err != nil:
		return err
	case rejected > 0:
		return &rejectedError{Target: b.s.target, Rejected: rejected, Requests: int64(c.records), Msg: msg}
	case msg != "":
		b.s.log.Warn("otlp receiver accepted every record with a warning", zap.String("endpoint", b.s.target), zap.String("message", msg))
	}
	return nil
}

// judge turns a request's verdict into its entries' outcome. A refusal
// for good of a request with several objects isolates them (see batcher)
// and fails them retryably; with one object, or when the partial success
// rejected every record, it fails them permanently.
func (b *batcher) judge(c *chunk, entries []entry, err error) error {
	if err == nil {
		return nil
	}
	rejected := isRejected(err)
	if !rejected && !sinks.IsPermanent(err) {
		return err
	}
	var r *rejectedError
	all := errors.As(err, &r) && r.Rejected >= r.Requests
	if len(c.entries) == 1 || all {
		if rejected {
			return sinks.Permanent(err)
		}
		return err
	}
	for _, i := range c.entries {
		b.isolate(entries[i].events)
	}
	return &isolatedError{cause: err, objects: len(c.entries)}
}

// isolatedError is a refusal of a request of several objects, retried one
// object per request.
type isolatedError struct {
	cause   error
	objects int
}

func (e *isolatedError) Error() string {
	return fmt.Sprintf("%v (a request of %d objects; each is sent again in a request of its own)", e.cause, e.objects)
}

func (b *batcher) isIsolated(events []*event.Event) bool {
	if len(events) == 0 {
		return false
	}
	b.isoMu.Lock()
	defer b.isoMu.Unlock()
	_, ok := b.isolated[events[0].PartitionKey()]
	return ok
}

func (b *batcher) isolate(events []*event.Event) {
	if len(events) == 0 {
		return
	}
	b.isoMu.Lock()
	defer b.isoMu.Unlock()
	if len(b.isolated) >= maxIsolated {
		clear(b.isolated)
	}
	b.isolated[events[0].PartitionKey()] = struct{}{}
}

func (b *batcher) unisolate(events []*event.Event) {
	if len(events) == 0 {
		return
	}
	b.isoMu.Lock()
	defer b.isoMu.Unlock()
	delete(b.isolated, events[0].PartitionKey())
}

// close sends what was collected and waits for the requests in flight,
// until ctx ends; then it cancels them (their objects fail). Every done
// was called when it returns.
func (b *batcher) close(ctx context.Context) {
	b.mu.Lock()
	b.closed = true
	b.flushLocked()
	b.mu.Unlock()
	b.keys.Close() // a Publish waiting for the window fails now
	idle := make(chan struct{})
	go func() { b.wg.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-ctx.Done():
		b.cancel()
		<-idle
	}
	b.cancel()
}
