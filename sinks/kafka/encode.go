package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// tally is what one publish adds to Stats. It is counted when the publish
// is answered for good (acknowledged, or failed permanently), never for an
// attempt that failed retryably: the caller retries those, and the retry
// counts them.
type tally struct {
	produced, gapRecords, shrunk, deadLettered, dropped int64
}

// encoded is a publish's events as records, in order.
type encoded struct {
	recs []*kgo.Record
	// one is recs' storage for a publish of one record, the usual one.
	one [1]*kgo.Record
	// permanent is the error of the first event that can never be
	// produced (too large, no dead-letter topic): the others are produced
	// all the same — a gap marker before it above all — and the publish
	// fails with it once they are acknowledged.
	permanent error
	tally     tally
}

// encode turns events into records in out, checking (or creating) each
// topic on its first use with ctx. A retryable error means nothing can be
// handed over yet.
func (s *Sink) encode(ctx context.Context, events []*event.Event, out *encoded) error {
	out.recs = out.one[:0]
	for _, e := range events {
		recs, err := s.records(ctx, e, &out.tally, out.recs)
		if err != nil {
			if !sinks.IsPermanent(err) {
				return err
			}
			if out.permanent == nil {
				out.permanent = err
			}
			continue
		}
		out.recs = recs
	}
	return nil
}

// records appends the records of one event to recs: one, or one per
// partition for a gap marker, or a stub for the dead-letter topic. On
// error nothing is appended (the caller keeps recs).
func (s *Sink) records(ctx context.Context, e *event.Event, t *tally, recs []*kgo.Record) ([]*kgo.Record, error) {
	c := &s.opts.Config
	topic, err := s.topic.render(e)
	if err != nil {
		return nil, sinks.Permanent(fmt.Errorf("event %s: %w", e.ID, err))
	}
	enc, err := sinks.EncodeAs(nil, e, c.format(), s.limit)
	var tooLarge error // why the event goes to the dead-letter topic
	switch {
	case errors.Is(err, sinks.ErrTooLarge):
		if c.DeadLetterTopic == "" {
			t.dropped++
			return nil, sinks.Permanent(fmt.Errorf("event %s: %w; no deadLetterTopic configured", e.ID, err))
		}
		tooLarge = err
		if enc, err = sinks.EncodeAs(nil, sinks.Truncate(e, sinks.TruncatedAll), c.format(), s.limit); err != nil {
			return nil, sinks.Permanent(fmt.Errorf("event %s: %w", e.ID, err))
		}
		topic = c.DeadLetterTopic
	case err != nil:
		return nil, sinks.Permanent(fmt.Errorf("event %s: %w", e.ID, err))
	}
	if err := s.topics.ensure(ctx, topic); err != nil {
		return nil, fmt.Errorf("event %s: %w", e.ID, err)
	}
	// Counted only now: a retryable failure above is attempted again.
	switch {
	case tooLarge != nil:
		s.log.Warn("event too large; sending a stub to the dead-letter topic", zap.String("id", e.ID), zap.Error(tooLarge))
		t.deadLettered++
	case enc.Event != e:
		t.shrunk++
	}
	r := record(topic, enc)
	if c.Tombstones && tooLarge == nil && e.UID != "" && e.Change() == event.Deleted {
		// After the deletion, in order (a publish of several records is
		// chained): the key's last record is then null.
		return append(recs, r, tombstone(topic, e.UID)), nil
	}
	if !everyPartition(e) || tooLarge != nil {
		return append(recs, r), nil
	}
	n, err := s.topics.partitions(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("marker %s: %w", e.ID, err)
	}
	t.gapRecords += int64(n)
	return append(recs, toEveryPartition(s.ctx, r, n)...), nil
}
