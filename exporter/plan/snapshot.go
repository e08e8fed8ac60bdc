package plan

import (
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/state"
)

// Snapshot renders the io.kubefeed.resource.snapshot event of cur.Obj for
// the snapshot id, taken at: the object as an added event would show it
// (the rule's ignores, redaction and enrichment; its filter asked as for
// an added event), by the rule that delivered it (rec.Rule), else the
// first rule that shows it. It returns nil when no rule shows the object
// (filtered out: the sink's consumers do not hold it either) or when rec,
// the sink's delivered state, is not cur.Obj's version: a snapshot event
// never describes a version the sink has not been sent.
func Snapshot(o Origin, k state.Key, cur Current, rec *state.Record, id string, at time.Time) (*event.Event, error) {
	if cur.Obj == nil || rec == nil || rec.Deleting || rec.Provisional {
		return nil, nil
	}
	m := MetaOf(cur.Obj)
	if rec.UID != m.UID || rec.ResourceVersion != m.ResourceVersion {
		return nil, nil
	}
	rules := cur.Rules
	if hasRule(rules, rec.Rule) {
		rules = DeletionRules(rules, rec.Rule, cur.Obj) // the delivering rule alone
	}
	var ferr error
	for _, rl := range rules {
		ev, err := render(o, cur.Res, k, Change{Kind: event.Added, Obj: cur.Obj}, m, rl, at)
		if err != nil && ferr == nil {
			ferr = err
		}
		if ev == nil {
			continue
		}
		ev.ID = event.SnapshotID(m.UID, m.ResourceVersion, id)
		ev.Type = event.Snapshot.Type()
		ev.ChangedBy = ""
		if d, ok := ev.Data.(*event.ChangeData); ok {
			d.ChangedBy = nil // who created it is not who is being snapshotted
		}
		return ev, nil
	}
	return nil, ferr
}

// Source is the CloudEvents source of the events o renders.
func (o Origin) Source() string { return o.source }
