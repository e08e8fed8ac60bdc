package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/test/cluster"
)

// Issue 23, end to end: sharded kubefeed processes (sharding.shards: 6,
// JetStream sink and checkpoint) against a real API server and a real
// nats-server, under a load of random ConfigMap changes, while replicas
// die, join, leave and pause. The first two tests run twice: against an
// API server with the ShardedListAndWatch feature gate (a second control
// plane with an audit log, which applies each shard's shardSelector) and
// against the package's own, without it (which ignores the selector, so
// that every shard filters client-side); the others without the gate.
// Every rebalance moves only the shards it must (onlyMoved), and every run
// ends with the same checks (checkShardedFeed): the stream, rebuilt by
// package consumer, equals a LIST; each uid's events are in
// resourceVersion order and no id is stored twice; `kubefeed verify` exits
// 0. The replicas, Leases and load are in sharding_env_test.go, the checks
// in sharding_checks_test.go.

// shards is the shard count of the sharding tests.
const shards = 6

// Three replicas share 6 shards (2 each). One is SIGKILLed in the middle
// of the load: once its member entry and its shard Leases expire, its two
// shards move to the two others (3 each, read from the Leases'
// holderIdentity), which take them from their checkpoints. Nothing is lost
// or reordered. Gate on: every list and watch of the scope that each
// replica made carried its shard's shardSelector (audit log, by the
// replica's impersonated user), kubefeed_shard_server_side is 1 and no
// object was dropped client-side. Gate off: kubefeed_shard_server_side is
// 0 and each replica dropped objects of other shards
// (kubefeed_shard_filtered_total > 0).
func TestShardedReplicaKilledMidLoadLosesNothing(t *testing.T) {
	forEachShardGate(t, "kill", func(t *testing.T, e *shardEnv) {
		a, b, c := e.start(t, "a"), e.start(t, "b"), e.start(t, "c")
		held := e.waitBalanced(t, "three replicas started", a, b, c)
		load := e.startLoad(t, 23)
		time.Sleep(3 * time.Second)

		victim := b
		e.checkServerSide(t, victim) // its metrics, before they are gone
		gone := held[victim.id]
		victim.kill(t)
		killed := time.Now()
		t.Logf("%s (shards %v) SIGKILLed after %d writes", victim.name, gone, load.ops.Load())
		after := e.waitBalanced(t, "after the kill", a, c)
		t.Logf("shards %v taken over %v after the kill: %s holds %v, %s holds %v", gone, time.Since(killed).Round(time.Millisecond),
			a.name, after[a.id], c.name, after[c.id])
		onlyMoved(t, "the kill", held, after, []*shardReplica{victim}, []*shardReplica{a, c})
		time.Sleep(2 * time.Second) // the survivors deliver the moved shards under load
		ops := load.finish(t)
		e.checkShardedFeed(t, ops, false)
		e.checkServerSide(t, a, c)
		e.checkAPIServerShards(t)
		e.checkAudit(t, map[*shardReplica][]int{a: after[a.id], b: gone, c: after[c.id]})
	})
}

// Two replicas share 6 shards (3 each); under load a third joins and takes
// 2 of them (each old owner drains and hands over through its
// checkpoint), then one of the first two leaves with SIGTERM (it drains,
// flushes, releases its Leases and leaves the registry, exit 0) and the
// other two take its shards. Nothing is lost or reordered, and since every
// handover was clean, no patch starts from a version the consumer does not
// hold.
func TestShardedReplicaJoiningAndLeavingRebalances(t *testing.T) {
	forEachShardGate(t, "rebalance", func(t *testing.T, e *shardEnv) {
		a, b := e.start(t, "a"), e.start(t, "b")
		before := e.waitBalanced(t, "two replicas started", a, b)
		load := e.startLoad(t, 24)
		time.Sleep(2 * time.Second)

		c := e.start(t, "c")
		joined := time.Now()
		mid := e.waitBalanced(t, "after the third joined", a, b, c)
		t.Logf("%s joined after %d writes; balanced %v later: %s %v -> %v, %s %v -> %v, %s %v", c.name, load.ops.Load(),
			time.Since(joined).Round(time.Millisecond), a.name, before[a.id], mid[a.id], b.name, before[b.id], mid[b.id], c.name, mid[c.id])
		onlyMoved(t, "the join", before, mid, []*shardReplica{a, b}, []*shardReplica{c})
		time.Sleep(2 * time.Second)

		e.checkServerSide(t, a)
		termed := time.Now()
		if code := a.term(60 * time.Second); code != 0 {
			t.Fatalf("%s exit code after SIGTERM: %d; log:\n%s", a.name, code, a.logs.String())
		}
		drained := time.Since(termed).Round(time.Millisecond)
		after := e.waitBalanced(t, "after one left", b, c)
		t.Logf("%s (shards %v) left in %v; balanced %v after the SIGTERM: %s %v, %s %v", a.name, mid[a.id], drained,
			time.Since(termed).Round(time.Millisecond), b.name, after[b.id], c.name, after[c.id])
		onlyMoved(t, "the leave", mid, after, []*shardReplica{a}, []*shardReplica{b, c})
		if live := e.members(t); len(live) != 2 || slices.Contains(live, a.id) {
			t.Errorf("members registry after %s left: %v, want only %s and %s", a.name, live, b.id, c.id)
		}
		time.Sleep(2 * time.Second)
		ops := load.finish(t)
		e.checkShardedFeed(t, ops, true)
		e.checkServerSide(t, b, c)
		e.checkAPIServerShards(t)
		all := func(id string) []int { return union(before[id], mid[id], after[id]) }
		e.checkAudit(t, map[*shardReplica][]int{a: all(a.id), b: all(b.id), c: all(c.id)})
	})
}

// A replica killed while it hands shards over: under load a third
// replica joins two, and the first old owner to start handing a shard over
// is SIGKILLed at once, in the middle of its drain. The shards it was
// handing over and those it kept end up with the two others (from the
// Lease it released or once its Leases expired), and nothing is lost or
// reordered.
func TestShardedReplicaKilledDuringHandover(t *testing.T) {
	e := newShardEnv(t, cp.APIServer(), "shard-handover-kill", false)
	a, b := e.start(t, "a"), e.start(t, "b")
	e.waitBalanced(t, "two replicas started", a, b)
	load := e.startLoad(t, 25)
	time.Sleep(2 * time.Second)
	marks := map[*shardReplica]int{a: len(a.logs.String()), b: len(b.logs.String())}
	c := e.start(t, "c")
	var victim, other *shardReplica
	deadline := time.Now().Add(30 * time.Second)
	for victim == nil {
		for r, mark := range marks {
			if handingOverRE.MatchString(r.logs.String()[mark:]) {
				victim = r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica handed a shard over to %s in 30s", c.name)
		}
		time.Sleep(time.Millisecond)
	}
	victim.kill(t)
	other = a
	if victim == a {
		other = b
	}
	killed := time.Now()
	after := e.waitBalanced(t, "after the kill", other, c)
	t.Logf("%s SIGKILLed as it handed over (after %d writes); balanced %v later: %s %v, %s %v", victim.name, load.ops.Load(),
		time.Since(killed).Round(time.Millisecond), other.name, after[other.id], c.name, after[c.id])
	time.Sleep(2 * time.Second)
	e.checkShardedFeed(t, load.finish(t), false)
}

// handingOverRE matches a rebalance in which a replica hands shards over.
var handingOverRE = regexp.MustCompile(`"handing over": \[[0-9]`)

// A replica paused (SIGSTOP) past its Leases, under load: the two others
// take its shards; when it resumes it must not send anything for them (the
// shards' fences: its renewals are overdue), and whatever it does next
// (stop with an error, or rejoin and take shards back through their
// checkpoints), the feed stays complete and in order.
func TestShardedReplicaPausedPastItsLeases(t *testing.T) {
	e := newShardEnv(t, cp.APIServer(), "shard-pause", false)
	a, b, c := e.start(t, "a"), e.start(t, "b"), e.start(t, "c")
	held := e.waitBalanced(t, "three replicas started", a, b, c)
	load := e.startLoad(t, 26)
	time.Sleep(2 * time.Second)
	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	after := e.waitBalanced(t, "while paused", a, c)
	t.Logf("%s (shards %v) paused after %d writes; balanced %v later: %s %v, %s %v", b.name, held[b.id], load.ops.Load(),
		time.Since(paused).Round(time.Millisecond), a.name, after[a.id], c.name, after[c.id])
	onlyMoved(t, "the pause", held, after, []*shardReplica{b}, []*shardReplica{a, c})
	time.Sleep(time.Second)
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // it resumes; it stops or rejoins
	rs := []*shardReplica{a, c}
	if !b.exited() {
		rs = append(rs, b)
	} else {
		t.Logf("%s exited after it resumed (%v)", b.name, b.waitErr)
	}
	final := e.waitBalanced(t, "after the pause", rs...)
	t.Logf("after the pause: %v", final)
	time.Sleep(time.Second)
	e.checkShardedFeed(t, load.finish(t), false)
}

// forEachShardGate runs body as subtest "gate on", against a new control
// plane with ShardedListAndWatch and an audit log, and "gate off",
// against the package's control plane. name makes the namespaces unique.
func forEachShardGate(t *testing.T, name string, body func(t *testing.T, e *shardEnv)) {
	t.Run("gate on", func(t *testing.T) {
		start := time.Now()
		gated := cluster.StartT(t, cluster.Options{FeatureGates: "ShardedListAndWatch=true", AuditLog: true})
		t.Logf("control plane with ShardedListAndWatch started in %v", time.Since(start).Round(time.Millisecond))
		body(t, newShardEnv(t, gated.APIServer(), "shard-"+name+"-on", true))
		t.Logf("took %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("gate off", func(t *testing.T) {
		start := time.Now()
		body(t, newShardEnv(t, cp.APIServer(), "shard-"+name+"-off", false))
		t.Logf("took %v", time.Since(start).Round(time.Millisecond))
	})
}

// A feed that ran unsharded (one leader, its checkpoint under the sink's
// name) is stopped, changes are made while nothing runs, and it is
// started again with sharding on (6 shards); then the same again from 6
// shards to 4. The new shards must not start as on a first run
// (initialList: skip would take the changed objects as their baseline and
// send nothing, and the deletions would be lost): each starts from the
// records of the layout before, and the stream still rebuilds the LIST.
func TestShardingTurnedOnKeepsTheFeedComplete(t *testing.T) {
	e := newShardEnv(t, cp.APIServer(), "shard-turned-on", false)
	plain := writeFile(t, "plain.yaml", strings.Replace(mustRead(t, e.cfg), fmt.Sprintf("sharding: {shards: %d}\n", shards), "", 1))
	leader := startKubefeed(t, plain)
	leader.waitLogContains(t, "caches synced; delivering")
	load := e.startLoad(t, 27)
	time.Sleep(2 * time.Second)
	ops := load.finish(t)
	waitDelivered(t, leader, 1)
	if code := leader.term(30 * time.Second); code != 0 {
		t.Fatalf("unsharded leader exit code after SIGTERM: %d", code)
	}
	// While nothing runs: more creates, updates and deletes.
	down := e.startLoad(t, 28)
	time.Sleep(time.Second)
	ops += down.finish(t)
	a, b := e.start(t, "a"), e.start(t, "b")
	e.waitBalanced(t, "sharded replicas started", a, b)
	e.checkShardedFeed(t, ops, false)
	seeded := strings.Count(a.logs.String()+b.logs.String(), "shard checkpoint started from the layout before")
	if seeded != shards {
		t.Errorf("%d shards started from the unsharded checkpoint, want %d", seeded, shards)
	}

	for _, r := range []*shardReplica{a, b} {
		if code := r.term(30 * time.Second); code != 0 {
			t.Fatalf("%s exit code after SIGTERM: %d", r.name, code)
		}
	}
	down = e.startLoad(t, 29)
	time.Sleep(time.Second)
	ops += down.finish(t)
	e.reshard(t, 4)
	c, d := e.start(t, "c"), e.start(t, "d")
	e.waitBalanced(t, "4 shards started", c, d)
	e.checkShardedFeed(t, ops, false)
	if seeded := strings.Count(c.logs.String()+d.logs.String(), `"from": "6 shards"`); seeded != 4 {
		t.Errorf("%d of 4 shards started from the checkpoints of 6 shards, want 4", seeded)
	}

	// Sharding turned off again: the unsharded checkpoint, written before
	// the shards ran, starts from theirs (4 shards, flushed last).
	for _, r := range []*shardReplica{c, d} {
		if code := r.term(30 * time.Second); code != 0 {
			t.Fatalf("%s exit code after SIGTERM: %d", r.name, code)
		}
	}
	down = e.startLoad(t, 30)
	time.Sleep(time.Second)
	ops += down.finish(t)
	again := startKubefeed(t, plain)
	again.waitLogContains(t, "caches synced; delivering")
	e.checkShardedFeed(t, ops, false)
	if !strings.Contains(again.logs.String(), "unsharded checkpoint started from the shards' layout") {
		t.Errorf("the unsharded leader did not start from the shards' checkpoints:\n%s", again.logs.String())
	}
}
