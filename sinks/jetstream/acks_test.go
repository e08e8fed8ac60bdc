package jetstream

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/sinks"
)

// outcomes records what each batch's done got, and how often.
type outcomes struct {
	mu    sync.Mutex
	errs  map[string][]error
	calls chan string
}

func newOutcomes() *outcomes {
	return &outcomes{errs: map[string][]error{}, calls: make(chan string, 100)}
}

func (o *outcomes) done(name string) func(error) {
	return func(err error) {
		o.mu.Lock()
		o.errs[name] = append(o.errs[name], err)
		o.mu.Unlock()
		o.calls <- name
	}
}

func (o *outcomes) get(name string) []error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.errs[name]
}

// handOver registers a batch of msgs as Publish does, as if all were sent.
func handOver(a *acker, name string, o *outcomes, ids ...string) (*pubBatch, uint64) {
	msgs := make([]outMsg, len(ids))
	for i, id := range ids {
		msgs[i] = outMsg{id: id, subject: "kubefeed.test." + id}
	}
	b := &pubBatch{slots: len(ids), done: o.done(name)}
	first := a.register(b, msgs)
	end := first + uint64(len(ids))
	a.handedOver(b, end, end, first, nil)
	return b, first
}

func ackMsg(a *acker, seq uint64, data string) *nats.Msg {
	return &nats.Msg{Subject: string(a.reply(nil, seq)), Data: []byte(data), Header: nats.Header{}}
}

func TestAckTable(t *testing.T) {
	newTable := func() (*acker, *int) {
		released := 0
		a := newAcker("_INBOX.t", "KUBEFEED", 10*time.Second, 16, func(n int) { released += n }, func() {})
		return a, &released
	}
	t.Run("a batch is done once, after its last ack", func(t *testing.T) {
		a, released := newTable()
		o := newOutcomes()
		_, first := handOver(a, "b", o, "e1", "e2")
		a.onAck(ackMsg(a, first, `{"stream":"KUBEFEED","seq":1}`), true)
		if got := o.get("b"); len(got) != 0 {
			t.Fatalf("done after one of two acks: %v", got)
		}
		a.onAck(ackMsg(a, first+1, `{"stream":"KUBEFEED","seq":2,"duplicate":true}`), true)
		a.onAck(ackMsg(a, first+1, `{"stream":"KUBEFEED","seq":2}`), true) // a stray second ack
		if got := o.get("b"); len(got) != 1 || got[0] != nil {
			t.Fatalf("done calls %v, want one nil", got)
		}
		if *released != 2 || a.published.Load() != 2 || a.duplicates.Load() != 1 {
			t.Errorf("released %d slots, %d published, %d duplicates; want 2, 2, 1", *released, a.published.Load(), a.duplicates.Load())
		}
	})
	t.Run("the first failure wins; every ack is awaited", func(t *testing.T) {
		a, _ := newTable()
		o := newOutcomes()
		_, first := handOver(a, "b", o, "e1", "e2", "e3")
		a.onAck(ackMsg(a, first+1, `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`), true)
		a.onAck(ackMsg(a, first, `not json`), true)
		if got := o.get("b"); len(got) != 0 {
			t.Fatalf("done before the last ack: %v", got)
		}
		a.onAck(ackMsg(a, first+2, `{"stream":"KUBEFEED","seq":9}`), true)
		got := o.get("b")
		if len(got) != 1 || got[0] == nil || sinks.IsPermanent(got[0]) || !strings.Contains(got[0].Error(), "publish e2") || !strings.Contains(got[0].Error(), "maximum messages exceeded") {
			t.Fatalf("done calls %v, want one retryable error naming e2 and the server's description", got)
		}
		var apiErr *jetstream.APIError
		if !errors.As(got[0], &apiErr) || apiErr.ErrorCode != 10077 {
			t.Errorf("error %v does not carry the API error", got[0])
		}
	})
	t.Run("an ack that is not a PubAck fails retryably", func(t *testing.T) {
		a, _ := newTable()
		o := newOutcomes()
		_, first := handOver(a, "b", o, "e1")
		a.onAck(ackMsg(a, first, `{"seq":1}`), true)
		got := o.get("b")
		if len(got) != 1 || !errors.Is(got[0], jetstream.ErrInvalidJSAck) || sinks.IsPermanent(got[0]) {
			t.Fatalf("done calls %v, want one retryable ErrInvalidJSAck", got)
		}
	})
	t.Run("no responders names the stream and the subject", func(t *testing.T) {
		a, _ := newTable()
		checks := 0
		a.onNoStream = func() { checks++ }
		o := newOutcomes()
		_, first := handOver(a, "b", o, "e1")
		m := ackMsg(a, first, "")
		m.Header.Set("Status", "503")
		a.onAck(m, true)
		got := o.get("b")
		if len(got) != 1 || !errors.Is(got[0], jetstream.ErrNoStreamResponse) || sinks.IsPermanent(got[0]) ||
			!strings.Contains(got[0].Error(), "stream KUBEFEED") || !strings.Contains(got[0].Error(), "kubefeed.test.e1") {
			t.Fatalf("done calls %v, want one retryable error naming stream KUBEFEED and the subject", got)
		}
		if checks != 1 {
			t.Errorf("the stream is to be checked again: onNoStream ran %d times", checks)
		}
	})
	t.Run("acks on foreign subjects are ignored", func(t *testing.T) {
		a, _ := newTable()
		o := newOutcomes()
		_, first := handOver(a, "b", o, "e1")
		for _, subj := range []string{"_INBOX.t.", "_INBOX.t", "_INBOX.t.!!", "_INBOX.t.zzzzzzzzzzzzzzzzzzzz", string(a.reply(nil, first+1))} {
			a.onAck(&nats.Msg{Subject: subj, Data: []byte(`{"stream":"KUBEFEED","seq":1}`)}, true)
		}
		if got := o.get("b"); len(got) != 0 {
			t.Fatalf("done calls %v after foreign acks", got)
		}
	})
	t.Run("a lost ack times out retryably, once", func(t *testing.T) {
		a, released := newTable()
		o := newOutcomes()
		_, first := handOver(a, "old", o, "e1", "e2")
		a.onAck(ackMsg(a, first, `{"stream":"KUBEFEED","seq":1}`), true)
		a.expire(time.Now().Add(a.timeout / 2))
		waitAnswers(a)
		if got := o.get("old"); len(got) != 0 {
			t.Fatalf("expired before the timeout: %v", got)
		}
		_, second := handOver(a, "young", o, "e3")
		p := a.table[second]
		p.deadline = p.deadline.Add(time.Hour) // published an hour later
		a.table[second] = p
		a.expire(time.Now().Add(a.timeout + time.Millisecond))
		waitAnswers(a)
		got := o.get("old")
		if len(got) != 1 || !errors.Is(got[0], jetstream.ErrAsyncPublishTimeout) || sinks.IsPermanent(got[0]) || !strings.Contains(got[0].Error(), "publish e2") {
			t.Fatalf("done calls %v, want one retryable timeout naming e2", got)
		}
		if got := o.get("young"); len(got) != 0 {
			t.Fatalf("the younger batch expired too: %v", got)
		}
		// The ack that comes after the timeout changes nothing.
		a.onAck(ackMsg(a, first+1, `{"stream":"KUBEFEED","seq":2}`), true)
		a.onAck(ackMsg(a, second, `{"stream":"KUBEFEED","seq":3}`), true)
		if got := o.get("old"); len(got) != 1 {
			t.Fatalf("done called again after a late ack: %v", got)
		}
		if *released != 3 {
			t.Errorf("released %d slots, want 3", *released)
		}
	})
	t.Run("a lost connection fails every outstanding ack retryably", func(t *testing.T) {
		a, released := newTable()
		status := make(chan nats.Status, 1)
		a.start(status)
		defer a.halt()
		o := newOutcomes()
		_, first := handOver(a, "b1", o, "e1", "e2")
		handOver(a, "b2", o, "e3")
		a.onAck(ackMsg(a, first, `{"stream":"KUBEFEED","seq":1}`), true)
		status <- nats.RECONNECTING
		for range 2 {
			<-o.calls
		}
		for _, name := range []string{"b1", "b2"} {
			got := o.get(name)
			if len(got) != 1 || !errors.Is(got[0], nats.ErrDisconnected) || sinks.IsPermanent(got[0]) {
				t.Errorf("%s: done calls %v, want one retryable ErrDisconnected", name, got)
			}
		}
		// A new batch after the loss is unaffected.
		_, third := handOver(a, "b3", o, "e4")
		a.onAck(ackMsg(a, third, `{"stream":"KUBEFEED","seq":4}`), true)
		if got := o.get("b3"); len(got) != 1 || got[0] != nil {
			t.Errorf("b3: done calls %v, want one nil", got)
		}
		if *released != 4 {
			t.Errorf("released %d slots, want 4", *released)
		}
	})
	t.Run("the reader takes acks that no publish reads", func(t *testing.T) {
		a, _ := newTable()
		a.start(nil)
		defer a.halt()
		o := newOutcomes()
		// Publishing fast: the reader leaves the acks to the next
		// publish, which never comes; its poll takes them.
		_, zeroth := handOver(a, "busy", o, "e0")
		_, first := handOver(a, "busy", o, "e1")
		a.in <- ackMsg(a, zeroth, `{"stream":"KUBEFEED","seq":1}`)
		a.in <- ackMsg(a, first, `{"stream":"KUBEFEED","seq":2}`)
		<-o.calls
		<-o.calls
		// Long after the last publish: the reader waits on the acks.
		_, second := handOver(a, "idle", o, "e2")
		a.lastPub.Store(time.Now().Add(-time.Hour).UnixNano())
		a.kick <- struct{}{}
		a.in <- ackMsg(a, second, `{"stream":"KUBEFEED","seq":3}`)
		<-o.calls
		for name, n := range map[string]int{"busy": 2, "idle": 1} {
			if got := o.get(name); len(got) != n || got[0] != nil || got[n-1] != nil {
				t.Errorf("%s: done calls %v, want %d nil", name, got, n)
			}
		}
	})
	t.Run("a publish that sent nothing is forgotten", func(t *testing.T) {
		a, released := newTable()
		o := newOutcomes()
		b := &pubBatch{slots: 2, done: o.done("b")}
		first := a.register(b, []outMsg{{id: "e1"}, {id: "e2"}})
		if !a.handedOver(b, first, first+2, first, errors.New("boom")) {
			t.Fatal("handedOver: something sent, want nothing")
		}
		a.expire(time.Now().Add(time.Hour))
		waitAnswers(a)
		a.failAll(errors.New("gone"))
		waitAnswers(a)
		select {
		case <-a.close():
		default:
			t.Fatal("Close would wait for a batch that was never handed over")
		}
		if got := o.get("b"); len(got) != 0 || *released != 0 {
			t.Errorf("done calls %v, released %d; want none (Publish returns the error and releases)", got, *released)
		}
	})
	t.Run("a publish that failed part way reports after the acks of what it sent", func(t *testing.T) {
		a, _ := newTable()
		o := newOutcomes()
		b := &pubBatch{slots: 3, done: o.done("b")}
		first := a.register(b, []outMsg{{id: "e1"}, {id: "e2"}, {id: "e3"}})
		if a.handedOver(b, first+1, first+3, first, errors.New("publish e2: boom")) {
			t.Fatal("handedOver: nothing sent, want e1 sent")
		}
		if got := o.get("b"); len(got) != 0 {
			t.Fatalf("done before e1's ack: %v", got)
		}
		a.onAck(ackMsg(a, first, `{"stream":"KUBEFEED","seq":1}`), true)
		if got := o.get("b"); len(got) != 1 || got[0] == nil || !strings.Contains(got[0].Error(), "boom") {
			t.Fatalf("done calls %v, want one with the publish error", got)
		}
	})
	t.Run("close waits for every done", func(t *testing.T) {
		a, _ := newTable()
		o := newOutcomes()
		_, first := handOver(a, "b", o, "e1")
		idle := a.close()
		select {
		case <-idle:
			t.Fatal("closed with an ack outstanding")
		default:
		}
		a.onAck(ackMsg(a, first, `{"stream":"KUBEFEED","seq":1}`), true)
		<-idle
		if got := o.get("b"); len(got) != 1 || got[0] != nil {
			t.Errorf("done calls %v, want one nil", got)
		}
	})
}
