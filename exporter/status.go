package exporter

import "go.uber.org/zap"

// Relists counts lists after the first (watch expiry, API server restart).
func (e *Exporter) Relists() int64 { return e.relists.Load() }

// Stalls counts watches restarted by the watchdog.
func (e *Exporter) Stalls() int64 { return e.stalls.Load() }

// Scopes lists the informers' scopes (one per distinct scope).
func (e *Exporter) Scopes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.scopes))
	for id := range e.scopes {
		out = append(out, id.String())
	}
	return out
}

// Stats returns per-sink counters.
func (e *Exporter) Stats() map[string]SinkStats {
	out := map[string]SinkStats{}
	for _, r := range e.runners {
		out[r.name] = r.stats()
	}
	return out
}

// Ready reports whether the pipeline runs and every scope and namespace
// selector has synced.
func (e *Exporter) Ready() bool {
	ok, _ := e.Healthy()
	return ok
}

// Healthy reports readiness and, when not ready, why: the first part that
// has not synced (an RBAC denial shows here, and in the logs, while every
// other scope delivers).
func (e *Exporter) Healthy() (bool, string) {
	if !e.started.Load() {
		return false, "starting"
	}
	for _, r := range e.runners {
		if ok, why := r.health(); !ok {
			return false, why
		}
	}
	if sel := e.namespaces.unsynced(); sel != "" {
		return false, "namespace selector " + sel + " not synced"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.scopes {
		if !s.ready.Load() {
			return false, "scope " + s.name + " not synced"
		}
	}
	return true, ""
}

// synced reports whether every scope and namespace selector has synced
// (sinks aside).
func (e *Exporter) synced() bool {
	if !e.started.Load() || e.namespaces.unsynced() != "" {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.scopes {
		if !s.ready.Load() {
			return false
		}
	}
	return true
}

// announce logs once that every cache synced.
func (e *Exporter) announce() {
	if e.synced() && e.announced.CompareAndSwap(false, true) {
		e.log.Info("caches synced; delivering", zap.Int("scopes", len(e.Scopes())))
	}
}
