package exporter

import (
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// A warm standby's caches follow the API server through its own watches,
// and its stores follow the old leader's checkpoint: when it takes the
// Lease, a watch may lag what the old leader delivered (a slow watch, a
// relist in progress), so that a cache shows an older version of an
// object than its sink holds, an old incarnation, or nothing yet. Sent,
// that would be a step back, a deletion that did not happen, or a
// resurrection. So until each warm scope's handlers have seen a version
// at least as new as the newest its sinks' records name (its catch-up
// target), its keys wait (errBehind); a scope that does not get there
// within catchUpTimeout stops waiting. resourceVersions are compared as
// the integers every Kubernetes API server gives; one that is not turns
// the wait off.

// errBehind parks a key of a scope whose cache may be behind what its
// sink was sent, until the scope caught up (awaitCatchUp queues it again).
var errBehind = errorString("the cache may be behind the checkpoint")

// errStale drops a key whose cached object is an older version of the one
// its sink holds (a warm scope whose watch still lags after the catch-up):
// it stays pending, and its next watch event queues it again. Nothing is
// ever sent backwards.
var errStale = errorString("the cached version is older than the one the sink holds")

type errorString string

func (e errorString) Error() string { return string(e) }

// catchUpPoll is how often a catching-up scope checks whether it is done
// (besides when its handlers reach the target).
const catchUpPoll = 50 * time.Millisecond

// catchUpTimeout bounds a scope's wait for its watch to reach its target.
const catchUpTimeout = 30 * time.Second

// parseRV is a resourceVersion as an integer; 0 when it is not one.
func parseRV(rv string) uint64 {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// noteSeen records that the scope's handlers saw version rv, while a
// catch-up target may be set (standing by, or catching up).
func (s *scope) noteSeen(rv string) {
	if !s.standingBy() && s.catchUp.Load() == 0 {
		return
	}
	n := parseRV(rv)
	for {
		cur := s.seenRV.Load()
		if n <= cur || s.seenRV.CompareAndSwap(cur, n) {
			return
		}
	}
}

// behind reports whether the scope is still catching up with its target.
func (s *scope) behind() bool {
	t := s.catchUp.Load()
	if t == 0 {
		return false
	}
	seen := s.seenRV.Load()
	timedOut := s.sh.now().UnixNano() > s.catchUpUntil.Load()
	if seen < t && !timedOut {
		return true
	}
	if s.catchUp.CompareAndSwap(t, 0) {
		if timedOut && seen < t {
			s.log.Warn("the watch did not reach the checkpoint's newest version in time; delivering from the cache as it is",
				zap.Uint64("target", t), zap.Uint64("seen", seen), zap.Duration("waited", catchUpTimeout))
		} else {
			s.log.Info("caught up with the checkpoint", zap.Uint64("resourceVersion", seen))
		}
	}
	return false
}

// newestRecorded is, per scope name, the newest resourceVersion the
// records of the sinks name (delivered or written ahead of a send); a
// scope with a version that is not an integer maps to 0.
func (e *Exporter) newestRecorded() map[string]uint64 {
	newest := map[string]uint64{}
	odd := map[string]bool{}
	for _, r := range e.runners {
		r.store.Range(func(k state.Key, rec state.Record) bool {
			if isSentinel(k) {
				return true
			}
			for _, rv := range []string{rec.ResourceVersion, sentRV(rec)} {
				if rv == "" {
					continue
				}
				n := parseRV(rv)
				if n == 0 {
					odd[rec.Scope] = true
				}
				newest[rec.Scope] = max(newest[rec.Scope], n)
			}
			return true
		})
	}
	for name := range odd {
		newest[name] = 0
	}
	return newest
}

func sentRV(rec state.Record) string {
	if rec.Sent == nil {
		return ""
	}
	return rec.Sent.ResourceVersion
}

// startCatchUp sets s's target from newest, unless its handlers saw it
// already.
func (s *scope) startCatchUp(newest map[string]uint64) {
	t := newest[s.name]
	if t == 0 || s.seenRV.Load() >= t {
		return
	}
	s.catchUpUntil.Store(s.sh.now().Add(catchUpTimeout).UnixNano())
	s.parkMu.Lock()
	s.parked, s.caughtUp = nil, false
	s.parkMu.Unlock()
	s.catchUp.Store(t)
	s.log.Info("waiting for the watch to reach the checkpoint's newest version", zap.Uint64("target", t), zap.Uint64("seen", s.seenRV.Load()))
	go s.awaitCatchUp()
}

// awaitCatchUp queues the parked keys again once the scope caught up (or
// stopped).
func (s *scope) awaitCatchUp() {
	t := time.NewTicker(catchUpPoll)
	defer t.Stop()
	for s.behind() {
		select {
		case <-t.C:
		case <-s.stop:
		}
	}
	s.parkMu.Lock()
	parked := s.parked
	s.parked, s.caughtUp = nil, true
	s.parkMu.Unlock()
	for _, p := range parked {
		p.r.queue.Add(p.it)
	}
}

type parkedKey struct {
	r  *sinkRunner
	it item
}

// park keeps it for r until the scope caught up; false when it has
// already (the caller looks again at once).
func (s *scope) park(r *sinkRunner, it item) bool {
	s.parkMu.Lock()
	defer s.parkMu.Unlock()
	if s.caughtUp {
		return false
	}
	s.parked = append(s.parked, parkedKey{r, it})
	return true
}

// stale reports whether cur is an older version of the object last
// names (same uid) in a scope that was warm: its watch lags the sink.
func stale(cur *unstructured.Unstructured, last *state.Record) bool {
	if cur == nil || last == nil || string(cur.GetUID()) != last.UID {
		return false
	}
	have := cur.GetResourceVersion()
	return plan.NewerVersion(last.ResourceVersion, have) || plan.NewerVersion(sentRV(*last), have)
}

// waitForWatch tells whether it must wait for a warm scope's watch: while
// a scope covering it catches up (parked: errBehind; or the scope just
// caught up: nil, look now), or when its cached object is older than the
// one the sink holds (errStale).
func (r *sinkRunner) waitForWatch(it item, cur *unstructured.Unstructured, last *state.Record) error {
	k := it.key()
	r.mu.RLock()
	var behind *scope
	warm := false
	for _, s := range r.scopes[k.GVR] {
		if !s.covers(k) {
			continue
		}
		if s.warm.Load() {
			warm = true
		}
		if behind == nil && s.behind() {
			behind = s
		}
	}
	r.mu.RUnlock()
	if behind != nil && behind.park(r, it) {
		return errBehind
	}
	if warm && stale(cur, last) {
		return errStale
	}
	return nil
}
