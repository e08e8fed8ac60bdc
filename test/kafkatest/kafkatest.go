// Package kafkatest runs kfake, franz-go's in-process implementation of the
// Kafka protocol, as the broker of tests: on a loopback port with a data
// directory, so that it can be shut down and restarted on the same port
// with the records it held, to simulate outages.
//
// No Kafka distribution can be installed where kubefeed's tests run, so
// kfake stands in for one; it speaks the same protocol (produce with acks
// and idempotence, metadata, topic admin, describe configs, SASL, fetch),
// which is all the sink uses.
package kafkatest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/test/freeport"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options of the cluster; the zero value is one broker on a free port, no
// topics, Kafka's default max.message.bytes.
type Options struct {
	// Topics to create at start, with Partitions each (default 1).
	Topics     []string
	Partitions int32
	// MaxMessageBytes is the broker's message.max.bytes; 0: the default
	// (1048588).
	MaxMessageBytes int
	// Extra kfake options (SASL users, TLS).
	Extra []kfake.Opt
}

// Cluster is a restartable kfake cluster.
type Cluster struct {
	mu   sync.Mutex
	opts []kfake.Opt
	c    *kfake.Cluster
	addr string
}

// StartT starts a cluster and closes it on t.Cleanup.
func StartT(t testing.TB, o Options) *Cluster {
	t.Helper()
	c, err := Start(t.TempDir(), o)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// Start starts a cluster keeping its data in dir.
func Start(dir string, o Options) (*Cluster, error) {
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir)}
	if len(o.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(max(o.Partitions, 1), o.Topics...))
	}
	if o.MaxMessageBytes > 0 {
		opts = append(opts, kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(o.MaxMessageBytes)}))
	}
	opts = append(opts, o.Extra...)
	c := &Cluster{opts: opts, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if err := c.Restart(); err != nil {
		return nil, err
	}
	return c, nil
}

// Addr is the broker's host:port.
func (c *Cluster) Addr() string { return c.addr }

// Kfake returns the running kfake cluster (for faults and controls).
func (c *Cluster) Kfake() *kfake.Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c
}

// Shutdown stops the broker, keeping its data; idempotent.
func (c *Cluster) Shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// Restart starts the broker again on the same port with the same data.
func (c *Cluster) Restart() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return nil
	}
	var err error
	// The port may linger a moment after a shutdown.
	for i := 0; i < 50; i++ {
		if c.c, err = kfake.NewCluster(c.opts...); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("kfake on %s: %w", c.addr, err)
}

// Records reads every record of topic, partition by partition in offset
// order, with extra client options (SASL, TLS) if the cluster needs them.
func Records(addr, topic string, extra ...kgo.Opt) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, extra...)...)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
			start[o.Partition] = kgo.NewOffset().AtStart()
			total += o.Offset
		}
	})
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	if total == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start})}, extra...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	byPart := map[int32][]*kgo.Record{}
	var n int64
	for n < total {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %d of %d records: %w", topic, n, total, err)
		}
		for _, fe := range fs.Errors() {
			return nil, fmt.Errorf("read %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < want[r.Partition] {
				byPart[r.Partition] = append(byPart[r.Partition], r)
				n++
			}
		})
	}
	var out []*kgo.Record
	for p := int32(0); len(byPart) > 0; p++ {
		out = append(out, byPart[p]...)
		delete(byPart, p)
	}
	return out, nil
}
