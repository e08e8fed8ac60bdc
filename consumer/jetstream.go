package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ReadOptions say what part of a stream ReadJetStream reads. The zero value
// (with Stream set) reads every message from the start.
type ReadOptions struct {
	// Stream is the stream's name (required).
	Stream string
	// Subjects filter the messages (NATS wildcards allowed); empty: all.
	Subjects []string
	// StartSeq, when > 0, starts at this stream sequence (for example the
	// ReadResult.LastSeq+1 of an earlier read, to read only the tail).
	StartSeq uint64
	// StartTime, when set (and StartSeq is 0), starts at the first message
	// stored at or after it.
	StartTime time.Time
	// Batch is how many messages one fetch asks for (default 256).
	Batch int
	// FetchWait bounds one fetch (default 5s). A fetch that returns
	// nothing before the read reached its end is retried until ctx ends.
	FetchWait time.Duration
	// OnError is called for a message that cannot be decoded or applied.
	// Returning nil skips it and goes on; nil OnError stops the read with
	// the error.
	OnError func(seq uint64, err error) error
}

// ReadResult describes what a read covered.
type ReadResult struct {
	// FirstSeq and LastSeq are the stream sequences of the first and last
	// message read (0 when none was).
	FirstSeq uint64 `json:"firstSeq"`
	LastSeq  uint64 `json:"lastSeq"`
	// FirstTime is when the first message read was stored.
	FirstTime time.Time `json:"firstTime"`
	// EndSeq is the stream's last matching sequence when the read began:
	// the read stopped there.
	EndSeq uint64 `json:"endSeq"`
	// StreamFirstSeq is the stream's first sequence when the read began;
	// above 1, older messages were removed (limits, max age, purge).
	StreamFirstSeq uint64 `json:"streamFirstSeq"`
	// Messages counts the messages read.
	Messages int `json:"messages"`
}

// maxNoResponders bounds the fetches in a row that ReadJetStream tries
// again after "no responders" (about 10s of pauses).
const maxNoResponders = 20

// ErrStreamNotFound is returned when the stream does not exist.
var ErrStreamNotFound = errors.New("stream not found")

// ReadJetStream applies the messages of a stream to s, in stream order,
// with an ordered consumer (ephemeral, server-side filtered, no acks). It
// stops at the last message that matched the filter when it began, so it
// terminates while kubefeed goes on publishing. ctx bounds the whole read.
func ReadJetStream(ctx context.Context, js jetstream.JetStream, s *State, o ReadOptions) (ReadResult, error) {
	var res ReadResult
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.FetchWait <= 0 {
		o.FetchWait = 5 * time.Second
	}
	st, err := js.Stream(ctx, o.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return res, fmt.Errorf("stream %s: %w", o.Stream, ErrStreamNotFound)
	}
	if err != nil {
		return res, fmt.Errorf("stream %s: %w", o.Stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("stream %s info: %w", o.Stream, err)
	}
	res.StreamFirstSeq = info.State.FirstSeq
	end, endTime, err := lastMatching(ctx, st, info, o.Subjects)
	if err != nil {
		return res, err
	}
	res.EndSeq = end
	if end == 0 || end < o.StartSeq || (o.StartSeq == 0 && !o.StartTime.IsZero() && endTime.Before(o.StartTime)) {
		return res, nil // nothing to read
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: o.Subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case o.StartSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, o.StartSeq
	case !o.StartTime.IsZero():
		t := o.StartTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("stream %s: ordered consumer: %w", o.Stream, err)
	}
	defer func() {
		// Best effort: the server would drop the consumer once inactive.
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = st.DeleteConsumer(dctx, info.Name)
			cancel()
		}
	}()
	// Each Fetch of an ordered consumer creates the server's consumer
	// anew. On a JetStream cluster the first pull can reach the server the
	// client is connected to before the new consumer's interest did, and
	// come back with "no responders": that fetch is tried again, after a
	// pause, up to maxNoResponders times in a row.
	noResponders := 0
	retry := func(err error) bool {
		if !errors.Is(err, nats.ErrNoResponders) || noResponders >= maxNoResponders {
			return false
		}
		noResponders++
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(noResponders)*50*time.Millisecond, time.Second)):
		}
		return true
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("stream %s: read stopped at sequence %d of %d: %w", o.Stream, res.LastSeq, end, err)
		}
		wait := o.FetchWait
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait < time.Millisecond {
			return res, fmt.Errorf("stream %s: read stopped at sequence %d of %d: %w", o.Stream, res.LastSeq, end, context.DeadlineExceeded)
		}
		batch, err := cons.Fetch(o.Batch, jetstream.FetchMaxWait(wait))
		if err != nil {
			if retry(err) {
				continue
			}
			return res, fmt.Errorf("stream %s: fetch after sequence %d: %w", o.Stream, res.LastSeq, err)
		}
		done, got := false, 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return res, fmt.Errorf("stream %s: message metadata: %w", o.Stream, err)
			}
			seq := md.Sequence.Stream
			if seq > end {
				done = true
				break
			}
			if res.FirstSeq == 0 {
				res.FirstSeq, res.FirstTime = seq, md.Timestamp
			}
			res.LastSeq = seq
			res.Messages++
			if err := applyMsg(s, m.Headers(), m.Data()); err != nil {
				err = fmt.Errorf("stream %s sequence %d: %w", o.Stream, seq, err)
				if o.OnError == nil {
					return res, err
				}
				if err := o.OnError(seq, err); err != nil {
					return res, err
				}
			}
			if seq >= end || md.NumPending == 0 {
				// Stop here: the rest of the batch (buffered, then
				// expired by the server) is not waited for.
				done = true
				break
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			if !done && retry(err) {
				continue
			}
			return res, fmt.Errorf("stream %s: fetch after sequence %d: %w", o.Stream, res.LastSeq, err)
		}
		noResponders = 0
		if done {
			return res, nil
		}
		if got == 0 {
			// Nothing came: the messages up to end may have been removed
			// since the read began (max age, purge).
			info, err := st.Info(ctx)
			if err != nil {
				return res, fmt.Errorf("stream %s info: %w", o.Stream, err)
			}
			if info.State.FirstSeq > end || info.State.Msgs == 0 {
				return res, nil
			}
			// Or only the read's subjects were purged (a shared stream).
			last, _, err := lastMatching(ctx, st, info, o.Subjects)
			if err != nil {
				return res, err
			}
			if last <= res.LastSeq {
				return res, nil
			}
		}
	}
}

// lastMatching returns the sequence and time of the last message matching
// the subjects (the stream's last message when there is no filter).
func lastMatching(ctx context.Context, st jetstream.Stream, info *jetstream.StreamInfo, subjects []string) (uint64, time.Time, error) {
	if len(subjects) == 0 {
		return info.State.LastSeq, info.State.LastTime, nil
	}
	var seq uint64
	var at time.Time
	for _, subj := range subjects {
		m, err := st.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("stream %s: last message on %s: %w", info.Config.Name, subj, err)
		}
		if m.Sequence > seq {
			seq, at = m.Sequence, m.Time
		}
	}
	return seq, at, nil
}

// applyMsg decodes a message in either CloudEvents mode and applies it.
func applyMsg(s *State, h nats.Header, body []byte) error {
	var e *Event
	var err error
	if h.Get("ce-specversion") != "" {
		e, err = DecodeBinary(func(name string) string { return headerValue(h, name) }, body)
	} else {
		e, err = Decode(body)
	}
	if err != nil {
		return err
	}
	return s.Apply(e)
}

// headerValue reads a header whatever case the producer wrote it in.
func headerValue(h nats.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}
