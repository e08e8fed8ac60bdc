package otlp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

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

// batcher is the sink's sinks.Batcher and what it sends: publishes of
// different objects collected into export requests of up to batch log
// records and maxRequestBytes, sent when full or linger after their first
// record. At most maxInFlight requests run at once, and at most
// batch×maxInFlight objects wait or are in flight (Publish blocks beyond
// that).
//
// A request the receiver refused for good (a permanent error, or a
// partial success that rejected records) does not say which of its
// objects were at fault: when it held several, each of them fails
// retryably and is remembered, and its retry goes in a request of its
// own (sinks.BatchEntry.Alone), whose answer is then that object's alone.
// The objects that were accepted are sent twice (at least once; the ids
// tell duplicates).
type batcher struct {
	*sinks.Batcher
	s      *Sink
	batch  int
	budget int // bytes of log records per request
	sizer  plog.ProtoMarshaler

	isoMu    sync.Mutex
	isolated map[string]struct{} // partition keys (uids) sent alone next time
}

// Per request, what the records do not account for: the request's and
// each resource group's framing and attributes.
const (
	requestOverhead = 4 << 10
	groupOverhead   = 512
)

func newBatcher(s *Sink) *batcher {
	b := &batcher{
		s: s, batch: max(s.cfg.Batch, 1),
		budget:   s.cfg.MaxRequestBytes - requestOverhead,
		isolated: map[string]struct{}{},
	}
	linger := s.cfg.Linger.Duration
	if linger <= 0 {
		linger = defaultLinger
	}
	b.Batcher = sinks.NewBatcher(sinks.BatcherOptions{
		Batch: b.batch, Linger: linger, MaxInFlight: s.cfg.MaxInFlight,
		Send: b.send, Alone: b.isIsolated, Closed: errClosed,
	})
	return b
}

// Publish hands one object's events to the next request and returns;
// done gets that request's outcome for them. It blocks while
// batch×maxInFlight objects are collected or in flight.
func (s *Sink) Publish(ctx context.Context, events []*event.Event, done func(error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed
	}
	return s.batcher.Publish(ctx, events, done)
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
// entry's outcome. An entry sent alone is batched again afterwards.
func (b *batcher) send(ctx context.Context, entries []sinks.BatchEntry) []error {
	errs := make([]error, len(entries))
	defer func() {
		for _, e := range entries {
			if e.Alone {
				b.unisolate(e.Events)
			}
		}
	}()
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
		err := b.judge(c, entries, b.export(ctx, c))
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
func (b *batcher) build(entries []sinks.BatchEntry, errs []error) []*chunk {
	var chunks []*chunk
	var cur *chunk
	sh := b.s.shape
	for i, en := range entries {
		records := make([]plog.LogRecord, len(en.Events))
		sizes := make([]int, len(en.Events))
		for j, ev := range en.Events {
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
		for j, ev := range en.Events {
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
func (b *batcher) export(ctx context.Context, c *chunk) error {
	ctx, cancel := context.WithTimeout(ctx, b.s.cfg.Timeout.Duration)
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
func (b *batcher) judge(c *chunk, entries []sinks.BatchEntry, err error) error {
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
		b.isolate(entries[i].Events)
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
func (b *batcher) close(ctx context.Context) { b.Close(ctx) }
