package natstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/test/natstest"
)

// A 3-node cluster keeps an R3 stream complete through its leader's
// SIGKILL and restart, and through a node frozen with SIGSTOP.
func TestClusterR3StreamSurvivesKillAndPause(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Short pings: a frozen node keeps its connections open, so only a
	// missed pong tells the client to move to another node.
	js := natstest.JetStream(t, c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.PingInterval(500*time.Millisecond), nats.MaxPingsOutstanding(2))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	next := 0
	publish := func(n int) {
		t.Helper()
		for end := next + n; next < end; next++ {
			for {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "r3.x", []byte(fmt.Sprint(next)), jetstream.WithMsgID(fmt.Sprint(next)))
				pcancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish %d: %v", next, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	publish(50)
	leader, err := c.StreamLeader(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(leader)
	publish(50) // the other two elect a new leader
	if now, err := c.StreamLeader(ctx, "R3"); err != nil || now == leader {
		t.Fatalf("stream leader after killing %s: %d, %v", c.Name(leader), now, err)
	}
	c.Restart(leader)
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	paused := (leader + 1) % c.N()
	c.Pause(paused)
	publish(50)
	c.Resume(paused)
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}

	msgs, err := natstest.ReadStream(c.URL(), "R3")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != next {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), next)
	}
	for i, m := range msgs {
		if string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, m.Data)
		}
	}
	// Every replica is current again, the restarted node among them.
	st, err := js.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream cluster info: %+v", info.Cluster)
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			t.Errorf("replica %+v not current", r)
		}
	}
}
