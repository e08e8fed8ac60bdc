package jetstream

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
	"github.com/kubefeed/kubefeed/test/natstest"
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

// waitAnswers waits until the dones the reader's side finished (expire,
// failAll) have run on the answers goroutine.
func waitAnswers(a *acker) {
	for {
		a.answers.mu.Lock()
		busy := a.answers.busy || len(a.answers.q) > 0
		a.answers.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAnswerQueueRunsWhatIsPushedAfterQuit: the answers queue keeps one
// goroutine until quit closes, and that goroutine returns once the queue
// is empty and quit is closed. A function pushed after that still runs
// (the push starts a goroutine again): a done pushed after halt, such as
// one of a reader failing what is left on its way out, is never dropped.
func TestAnswerQueueRunsWhatIsPushedAfterQuit(t *testing.T) {
	quit := make(chan struct{})
	aq := &answerQueue{wake: make(chan struct{}, 1), quit: quit}
	ran := make(chan int, 2)
	aq.push(func() { ran <- 1 })
	<-ran
	close(quit)
	time.Sleep(50 * time.Millisecond) // the goroutine sees quit and returns
	aq.push(func() { ran <- 2 })
	select {
	case <-ran:
	case <-time.After(2 * time.Second):
		t.Fatal("a function pushed after quit closed never ran (its done would be lost)")
	}
}

// TestLateAckDoesNotCountForTheRetry: e1 times out and is published
// again; the first attempt's ack, arriving late, does not resolve the
// retry, whose own (failing) ack decides it.
func TestLateAckDoesNotCountForTheRetry(t *testing.T) {
	released := 0
	a := newAcker("_INBOX.t", "KUBEFEED", time.Second, 16, func(n int) { released += n }, func() {})
	o := newOutcomes()
	_, s1 := handOver(a, "first", o, "e1")
	a.expire(time.Now().Add(time.Hour))
	waitAnswers(a)
	if got := o.get("first"); len(got) != 1 || !errors.Is(got[0], jetstream.ErrAsyncPublishTimeout) || sinks.IsPermanent(got[0]) {
		t.Fatalf("first attempt: done calls %v, want one retryable timeout", got)
	}
	_, s2 := handOver(a, "retry", o, "e1")
	if s1 == s2 {
		t.Fatalf("the retry reuses sequence %d", s1)
	}
	a.onAck(ackMsg(a, s1, `{"stream":"KUBEFEED","seq":1}`), true) // late
	if got := o.get("retry"); len(got) != 0 {
		t.Fatalf("the first attempt's late ack resolved the retry: %v", got)
	}
	a.onAck(ackMsg(a, s2, `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`), true)
	if got := o.get("retry"); len(got) != 1 || got[0] == nil {
		t.Fatalf("retry: done calls %v, want one error", got)
	}
	if released != 2 || a.waiting() != 0 || a.published.Load() != 0 {
		t.Errorf("released %d slots, %d waiting, %d published; want 2, 0, 0", released, a.waiting(), a.published.Load())
	}
}

// TestAckOutcomes: what one publish response means for its event. Only a
// PubAck naming the configured stream, without an error, is success;
// everything else fails retryably.
func TestAckOutcomes(t *testing.T) {
	for _, c := range []struct {
		name, data, status string
		ok                 bool
	}{
		{"stored", `{"stream":"KUBEFEED","seq":1}`, "", true},
		{"duplicate", `{"stream":"KUBEFEED","seq":1,"duplicate":true}`, "", true},
		{"seq beyond 2^53", `{"stream":"KUBEFEED","seq":9007199254740993}`, "", true},
		{"unknown members skipped", `{"domain":"hub","stream":"KUBEFEED","seq":1,"x":[1,{"y":null}],"batch":"b"}`, "", true},
		{"503 in the body", `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, "", false},
		{"error with a stream", `{"stream":"KUBEFEED","seq":7,"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}}`, "", false},
		{"error after the stream", `{"stream":"KUBEFEED","seq":7,"duplicate":false,"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}`, "", false},
		{"empty error object", `{"stream":"KUBEFEED","seq":1,"error":{}}`, "", false},
		{"null error", `{"stream":"KUBEFEED","seq":1,"error":null}`, "", false},
		{"another stream stored it", `{"stream":"OTHER","seq":1}`, "", false},
		{"stream named with an escape", `{"stream":"KUBEFEE\u0044","seq":1}`, "", true},
		{"empty stream", `{"stream":"","seq":1}`, "", false},
		{"seq overflows", `{"stream":"KUBEFEED","seq":18446744073709551616}`, "", false},
		{"negative seq", `{"stream":"KUBEFEED","seq":-1}`, "", false},
		{"duplicate as a string", `{"stream":"KUBEFEED","seq":1,"duplicate":"true"}`, "", false},
		{"two documents", `{"stream":"KUBEFEED","seq":1}{"stream":"KUBEFEED","seq":2}`, "", false},
		{"truncated", `{"stream":"KUBEFEED","seq":1`, "", false},
		{"backslash at the end", `{"stream":"KUBEFEED\`, "", false},
		{"null", `null`, "", false},
		{"no responders", ``, "503", false},
		{"request timeout status", ``, "408", false},
		{"empty", ``, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAcker("_INBOX.t", "KUBEFEED", time.Second, 4, func(int) {}, func() {})
			m := &nats.Msg{Subject: "_INBOX.t.0", Data: []byte(c.data), Header: nats.Header{}}
			if c.status != "" {
				m.Header.Set("Status", c.status)
			}
			err := a.outcome(m, pending{id: "e1", subject: "kubefeed.test.e1"})
			switch {
			case c.ok && err != nil:
				t.Fatalf("%s: %v, want success", c.data, err)
			case !c.ok && err == nil:
				t.Fatalf("%s taken as success", c.data)
			case err != nil && (sinks.IsPermanent(err) || !strings.Contains(err.Error(), "e1")):
				t.Fatalf("%s: %v, want a retryable error naming e1", c.data, err)
			}
		})
	}
}

// TestAckFromAnotherStreamFailsTheSend: the configured stream was deleted
// and another stream now holds the subjects. The sink does not report the
// events as delivered to stream KUBEFEED, since they are not in it: the
// send fails retryably naming both streams, and the next one checks the
// stream again.
func TestAckFromAnotherStreamFailsTheSend(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, js := sentThenStreamDeleted(ctx, t, srv.URL(), false)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"kubefeed.>"}}); err != nil {
		t.Fatal(err)
	}
	err := s.Send(ctx, []*event.Event{sinktest.Event(2, 1)})
	if err == nil {
		t.Fatal("send succeeded although stream KUBEFEED does not exist (stream OTHER took the event)")
	}
	if sinks.IsPermanent(err) || !strings.Contains(err.Error(), "OTHER") || !strings.Contains(err.Error(), "KUBEFEED") {
		t.Errorf("send: %v, want a retryable error naming both streams", err)
	}
	// The stream is checked again: it is missing (no provision).
	if err := s.Send(ctx, []*event.Event{sinktest.Event(2, 1)}); err == nil || !strings.Contains(err.Error(), "stream KUBEFEED not found") {
		t.Errorf("second send: %v, want stream KUBEFEED not found", err)
	}
}

// TestDoneThatPublishesDoesNotStallTheReader: the AsyncSink contract lets
// done call Publish again, and promises that done always comes (the sink
// bounds the wait for acks itself). Here A's done, for an ack the reader
// read, publishes C and waits for the window slot that a concurrent
// Publish(P) took first. P's ack never comes, so only the reader's ack
// timeout can free the slot: the dones of what the reader finished run on
// the answers queue's goroutine, not on the reader's, so the reader goes
// on and done(P) comes (with a retryable timeout) within a bound far above
// the ack timeout.
func TestDoneThatPublishesDoesNotStallTheReader(t *testing.T) {
	srv := natstest.StartT(t, natstest.Options{})
	cfg := testConfig(srv.URL(), true)
	cfg.Provision.Subjects = []string{"elsewhere.>"} // no stream acks kubefeed.>
	cfg.MaxPending = 1
	nc, _ := connect(t, srv.URL())
	fake, err := nc.SubscribeSync("kubefeed.>") // the test answers (or not) in place of a stream
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const ackTimeout = 300 * time.Millisecond
	s := openSink(t, cfg, ackTimeout)
	t.Cleanup(func() { // bounded: a stuck reader must not hang the suite
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})

	doneP := make(chan error, 1)
	doneC := make(chan error, 1)
	publishedC := make(chan error, 1)
	doneA := func(err error) {
		if err != nil {
			t.Errorf("done(A): %v", err)
		}
		// Publish from inside done, as the contract allows.
		publishedC <- s.Publish(context.Background(), []*event.Event{sinktest.Event(3, 1)}, func(err error) { doneC <- err })
	}
	if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(1, 1)}, doneA); err != nil {
		t.Fatal(err)
	}
	mA, err := fake.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// P waits for the window (A holds its only slot).
	go func() {
		if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(2, 1)}, func(err error) { doneP <- err }); err != nil {
			doneP <- err
		}
	}()
	for !s.win.slots.Waiting() {
		time.Sleep(time.Millisecond) // until P is inside acquire
	}
	// A's ack: the reader runs done(A), which publishes C.
	if err := nc.PublishMsg(&nats.Msg{Subject: mA.Reply, Data: []byte(`{"stream":"KUBEFEED","seq":1}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.NextMsg(5 * time.Second); err != nil { // P's message; never answered
		t.Fatal(err)
	}
	select {
	case err := <-doneP:
		if err == nil {
			t.Fatal("done(P) got nil without an ack")
		}
	case <-time.After(20 * ackTimeout):
		t.Fatalf("done(P) not called %s after its publish (ack timeout %s): the ack reader is stuck in done(A)'s Publish", 20*ackTimeout, ackTimeout)
	}
}
