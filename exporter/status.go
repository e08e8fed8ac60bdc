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
	if e.standby.Load() {
		// Ready to take over once every cache synced: a rollout waits for
		// that before it stops the leader.
		if why := e.unsynced(); why != "" {
			return false, "standby, warming: " + why
		}
		return true, "standby, warm"
	}
	for _, r := range e.runners {
		if ok, why := r.health(); !ok {
			return false, why
		}
	}
	if why := e.unsynced(); why != "" {
		return false, why
	}
	return true, ""
}

// unsynced names the first namespace selector or scope that has not
// synced, or is "".
func (e *Exporter) unsynced() string {
	if sel := e.namespaces.unsynced(); sel != "" {
		return "namespace selector " + sel + " not synced"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.scopes {
		if !s.ready.Load() {
			return "scope " + s.name + " not synced"
		}
	}
	return ""
}

// synced reports whether every scope and namespace selector has synced
// (sinks aside).
func (e *Exporter) synced() bool {
	return e.started.Load() && e.unsynced() == ""
}

// announce logs once that every cache synced.
func (e *Exporter) announce() {
	if e.standby.Load() {
		if e.synced() && e.announcedWarm.CompareAndSwap(false, true) {
			e.log.Info("standby, warm: caches synced; waiting for the lease", zap.Int("scopes", len(e.Scopes())))
		}
		return
	}
	if e.synced() && e.announced.CompareAndSwap(false, true) {
		e.log.Info("caches synced; delivering", zap.Int("scopes", len(e.Scopes())))
	}
}
