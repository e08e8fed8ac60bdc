package exporter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/plan"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// A snapshot on demand goes into the feed itself: per sink and per
// resource a started marker, then every object the sink's scopes hold
// through its key's own queue (so a snapshot event never overtakes a
// newer change of its object, and live changes keep flowing), then a
// completed marker once every key was acknowledged. One snapshot runs at
// a time per sink.

// SnapshotRequest asks for a snapshot.
type SnapshotRequest struct {
	// ID names the snapshot; the same ID sent again (a restart in the
	// middle) renders the same event ids.
	ID string
	// Resource is a resource as the config names it (configmaps,
	// deployments.apps, a kind); "" for every resource watched.
	Resource string
	// Namespace restricts the snapshot to one namespace; "" for all.
	Namespace string
	// Sink names one sink; "" for every sink.
	Sink string
	// Time is the CloudEvents time of every event of the snapshot.
	Time time.Time
}

// SnapshotResult is what a snapshot sent to one sink.
type SnapshotResult struct {
	Sink string
	// Resources are the resources it covered ("configmaps",
	// "deployments.apps") and Count the snapshot events sent.
	Resources []string
	Count     int
}

// ErrNoSnapshotScope is returned when no scope matches a request.
var ErrNoSnapshotScope = errors.New("no watched resource matches")

// ErrStopped is returned by a snapshot cut short because the exporter
// stopped (Run returned): its keys are no longer worked.
var ErrStopped = errors.New("the exporter stopped")

// snapshotRun is one sink's share of a snapshot: the keys it still owes
// an event, and the count sent.
type snapshotRun struct {
	id        string
	at        time.Time
	remaining atomic.Int64
	count     atomic.Int64
	done      chan struct{}
	closeOnce sync.Once
	// abandoned is set (under the pending set's lock, dropSnapshot) when
	// the run's context ended: no key may owe it an event any more.
	abandoned atomic.Bool

	mu     sync.Mutex
	perGVR map[schema.GroupVersionResource]int
}

// settled is called once per noted key whose snapshot was delivered (or
// whose object is gone, or shown by no rule); sent says whether an event
// was sent for it.
func (sr *snapshotRun) settled(gvr schema.GroupVersionResource, sent bool) {
	if sent {
		sr.count.Add(1)
		sr.mu.Lock()
		sr.perGVR[gvr]++
		sr.mu.Unlock()
	}
	if sr.remaining.Add(-1) == 0 {
		sr.closeOnce.Do(func() { close(sr.done) })
	}
}

// Snapshot runs req on its sinks at once (each sink one snapshot at a
// time) and returns when every sink's completed marker was acknowledged,
// or with the first error (ctx ended, the exporter stopped: ErrStopped,
// no resource matched). It waits for the caches to sync first.
func (e *Exporter) Snapshot(ctx context.Context, req SnapshotRequest) ([]SnapshotResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-e.stopped:
			cancel(ErrStopped)
		case <-ctx.Done():
		}
	}()
	res, err := e.snapshot(ctx, req)
	if err != nil && errors.Is(context.Cause(ctx), ErrStopped) {
		return nil, fmt.Errorf("snapshot: %w", ErrStopped)
	}
	return res, err
}

func (e *Exporter) snapshot(ctx context.Context, req SnapshotRequest) ([]SnapshotResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.ID == "" {
		return nil, errors.New("snapshot: an id is required")
	}
	if e.standby.Load() {
		return nil, errors.New("snapshot: this replica stands by; the leader runs snapshots")
	}
	if req.Time.IsZero() {
		req.Time = e.now()
	}
	var runners []*sinkRunner
	for _, r := range e.runners {
		if req.Sink == "" || r.name == req.Sink {
			runners = append(runners, r)
		}
	}
	if len(runners) == 0 {
		return nil, fmt.Errorf("snapshot: no sink named %q", req.Sink)
	}
	// The name as the config's resources are resolved (plural, singular,
	// short name, kind, NAME.GROUP, GROUP/VERSION/NAME); nil: every
	// resource watched.
	var only *schema.GroupResource
	if req.Resource != "" {
		res, err := e.resolver.Resolve(req.Resource)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w %s: %v", ErrNoSnapshotScope, req.Resource, err)
		}
		gr := res.GVR.GroupResource()
		only = &gr
	}
	for !e.synced() {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	type answer struct {
		res SnapshotResult
		err error
	}
	answers := make([]answer, len(runners))
	var wg sync.WaitGroup
	for i, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := r.snapshot(ctx, req, only)
			answers[i] = answer{res, err}
		}()
	}
	wg.Wait()
	var out []SnapshotResult
	matched := false
	for _, a := range answers {
		switch {
		case errors.Is(a.err, ErrNoSnapshotScope):
		case a.err != nil:
			return nil, a.err
		default:
			matched = true
			out = append(out, a.res)
		}
	}
	if !matched {
		what := req.Resource
		if what == "" {
			what = "any resource"
		}
		return nil, fmt.Errorf("snapshot: %w %s in the sinks asked for", ErrNoSnapshotScope, what)
	}
	return out, nil
}

// snapshotScope is one resource (and namespace) of a sink's snapshot, and
// the scopes holding its objects.
type snapshotScope struct {
	gvr       schema.GroupVersionResource
	name      string // configmaps, deployments.apps
	marker    *event.Event
	scopes    []*scope
	namespace string
}

// snapshot runs req on r: markers, keys, markers.
func (r *sinkRunner) snapshot(ctx context.Context, req SnapshotRequest, only *schema.GroupResource) (SnapshotResult, error) {
	res := SnapshotResult{Sink: r.name}
	targets := r.snapshotScopes(req, only)
	if len(targets) == 0 {
		return res, ErrNoSnapshotScope
	}
	select { // one at a time per sink
	case r.snapshotting <- struct{}{}:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	defer func() { <-r.snapshotting }()
	run := &snapshotRun{id: req.ID, at: req.Time.UTC(), done: make(chan struct{}), perGVR: map[schema.GroupVersionResource]int{}}
	run.remaining.Store(1) // held until every key was noted
	for _, t := range targets {
		res.Resources = append(res.Resources, t.name)
		if err := r.sendSnapshotMarker(ctx, t.marker); err != nil {
			return res, err
		}
	}
	noted := 0
	// Keys noted already: another scope of the sink may hold a key too,
	// and its pending record (which says so) goes once the key was
	// delivered, which may be before the enumeration reaches that scope.
	seen := map[item]struct{}{}
	for _, t := range targets {
		for _, s := range t.scopes {
			for _, obj := range s.informer.GetIndexer().List() {
				u, ok := obj.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				k := s.keyOf(u)
				if !s.covers(k) || (t.namespace != "" && k.Namespace != t.namespace) {
					continue
				}
				it := s.itemOf(k)
				if _, dup := seen[it]; dup {
					continue
				}
				seen[it] = struct{}{}
				run.remaining.Add(1)
				if !r.pending.noteSnapshot(it, run, time.Now()) {
					run.remaining.Add(-1)
					continue
				}
				noted++
				r.queue.Add(it)
			}
		}
	}
	r.log.Info("snapshot started", zap.String("snapshot", req.ID), zap.Strings("resources", res.Resources), zap.Int("objects", noted))
	run.settled(schema.GroupVersionResource{}, false) // the enumeration's hold
	select {
	case <-run.done:
	case <-ctx.Done():
		r.pending.dropSnapshot(run)
		return res, ctx.Err()
	}
	res.Count = int(run.count.Load())
	for _, t := range targets {
		n := t.countOf(run)
		done := *t.marker
		d := *t.marker.Data.(*event.SnapshotData)
		d.Count = &n
		done.Data = &d
		done.Type = event.TypeSnapshotCompleted
		// The count is in the id: a run repeated after a failover (the
		// same snapshot id and time) may count differently, and one id is
		// always the same bytes.
		done.ID = event.SnapshotMarkerID(req.ID, t.gvr.Group, t.gvr.Resource, t.namespace, "completed") + "." + strconv.Itoa(n)
		if err := r.sendSnapshotMarker(ctx, &done); err != nil {
			return res, err
		}
	}
	r.log.Info("snapshot completed", zap.String("snapshot", req.ID), zap.Int("events", res.Count))
	return res, nil
}

// countOf is the number of snapshot events run sent of t's resource.
func (t *snapshotScope) countOf(run *snapshotRun) int {
	run.mu.Lock()
	defer run.mu.Unlock()
	return run.perGVR[t.gvr]
}

// snapshotScopes are the resources of r that req names, with their
// scopes and started markers, in a fixed order.
func (r *sinkRunner) snapshotScopes(req SnapshotRequest, only *schema.GroupResource) []*snapshotScope {
	byGVR := map[schema.GroupVersionResource]*snapshotScope{}
	for _, s := range r.scopeList() {
		if only != nil && s.id.GVR.GroupResource() != *only {
			continue
		}
		if req.Namespace != "" && (!s.res.Namespaced || (s.id.Namespace != "" && s.id.Namespace != req.Namespace)) {
			// A namespace names no cluster-scoped object.
			continue
		}
		t := byGVR[s.id.GVR]
		if t == nil {
			name := s.id.GVR.Resource
			if s.id.GVR.Group != "" {
				name += "." + s.id.GVR.Group
			}
			t = &snapshotScope{gvr: s.id.GVR, name: name, namespace: req.Namespace}
			t.marker = &event.Event{
				SpecVersion:     event.SpecVersion,
				ID:              event.SnapshotMarkerID(req.ID, s.id.GVR.Group, s.id.GVR.Resource, req.Namespace, "started"),
				Source:          r.sh.origin.Source(),
				Type:            event.TypeSnapshotStarted,
				Subject:         "/snapshots/" + req.ID,
				Time:            req.Time.UTC(),
				DataContentType: event.DataContentType,
				Cluster:         r.sh.cluster,
				APIVersion:      s.res.APIVersion(),
				Kind:            s.res.GVK.Kind,
				Resource:        s.id.GVR.Resource,
				Namespace:       req.Namespace,
				Data:            &event.SnapshotData{ID: req.ID, Group: s.id.GVR.Group, Resource: s.id.GVR.Resource, Namespace: req.Namespace},
			}
			byGVR[s.id.GVR] = t
		}
		t.scopes = append(t.scopes, s)
	}
	out := make([]*snapshotScope, 0, len(byGVR))
	for _, t := range byGVR {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// sendSnapshotMarker publishes a snapshot marker and waits for its ack,
// retrying a retryable failure with backoff until ctx ends. A marker the
// sink refuses for good is dropped and counted, as a gap marker is.
func (r *sinkRunner) sendSnapshotMarker(ctx context.Context, ev *event.Event) error {
	backoff := retryBase
	for {
		err := r.sendAlone(ctx, ev, "snapshot marker")
		if err == nil {
			return nil
		}
		r.log.Warn("snapshot marker not sent, retrying", zap.String("id", ev.ID), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < RetryCap {
			backoff *= 2
		}
	}
}

// attachSnapshot renders the snapshot event d's key owes, sent after d's
// events: of the current state, which the sink then holds (none when the
// object is gone or shown by no rule). A split send (d.again) owes it to
// its second step.
func (r *sinkRunner) attachSnapshot(d *delivery, last *state.Record) {
	run := d.snap.snapshot
	if run == nil || d.again || run.abandoned.Load() {
		return
	}
	d.snapshotDue = true
	rec := last
	switch {
	case d.out.Forget:
		rec = nil
	case d.out.Record != nil:
		rec = d.out.Record
	}
	ev, err := plan.Snapshot(r.sh.origin, d.it.key(), d.cur, rec, run.id, run.at)
	if err != nil {
		r.filterErrors.Add(1)
		r.sh.metrics.filterErrors.WithLabelValues(r.name).Inc()
	}
	d.snapshotEv = ev
}

// snapshotSettled ends d's part in its snapshot once d's send was
// acknowledged or refused for good (sent: acknowledged), or hands the
// snapshot on to the key's next round (a split send).
func (r *sinkRunner) snapshotSettled(d *delivery, sent bool) {
	run := d.snap.snapshot
	if run == nil {
		return
	}
	if !d.snapshotDue {
		r.pending.noteSnapshot(d.it, run, time.Now())
		return
	}
	sent = sent && d.snapshotEv != nil
	if sent {
		r.delivered.Add(1)
	}
	run.settled(d.it.key().GVR, sent)
}
