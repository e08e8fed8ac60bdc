package app

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/kubefeed/kubefeed/consumer"
)

// sortDiffs orders differences by object, then the feed's uid (a name's
// incarnations).
func sortDiffs(ds []*difference) {
	uid := func(d *difference) string {
		if d.Feed == nil {
			return ""
		}
		return d.Feed.UID
	}
	sort.SliceStable(ds, func(i, j int) bool {
		if ds[i].Object != ds[j].Object {
			return ds[i].Object < ds[j].Object
		}
		return uid(ds[i]) < uid(ds[j])
	})
}

func printReport(w io.Writer, output string, r *verifyReport) error {
	if output == "json" {
		if r.Differences == nil {
			r.Differences = []*difference{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	for _, d := range r.Differences {
		var msg string
		switch d.Problem {
		case diffMissing:
			msg = fmt.Sprintf("not in the feed; the cluster has it at resourceVersion %s (uid %s)", d.Cluster.ResourceVersion, d.Cluster.UID)
		case diffExtra:
			if d.Cluster != nil {
				// An incarnation whose deletion the feed lacks, under a
				// name another uid holds now.
				msg = fmt.Sprintf("in the feed as uid %s at resourceVersion %s (event %s), never deleted; the cluster holds this name as uid %s (resourceVersion %s)",
					d.Feed.UID, d.Feed.ResourceVersion, d.Feed.EventID, d.Cluster.UID, d.Cluster.ResourceVersion)
				break
			}
			msg = fmt.Sprintf("in the feed at resourceVersion %s (event %s), gone from the cluster", d.Feed.ResourceVersion, d.Feed.EventID)
		case diffUID:
			msg = fmt.Sprintf("the feed has uid %s (resourceVersion %s), the cluster uid %s (resourceVersion %s)", d.Feed.UID, d.Feed.ResourceVersion, d.Cluster.UID, d.Cluster.ResourceVersion)
		default:
			msg = fmt.Sprintf("the feed has resourceVersion %s, the cluster %s; they differ at %s", d.Feed.ResourceVersion, d.Cluster.ResourceVersion, strings.Join(d.Paths, ", "))
		}
		fmt.Fprintf(w, "%-8s %s  %s\n", strings.ToUpper(d.Problem), d.Object, msg)
	}
	for _, n := range r.NotCompared {
		fmt.Fprintf(w, "note: watch[%d] (%s) not compared: %s\n", n.Rule, n.Resource, n.Reason)
	}
	if n := len(r.Predating); n > 0 {
		names := strings.Join(r.Predating[:min(n, 10)], ", ")
		if n > 10 {
			names += fmt.Sprintf(" and %d more (-o json lists them all)", n-10)
		}
		fmt.Fprintf(w, "note: %d objects are older than the feed and not in it (initialList: skip, or the stream or topic dropped old messages): %s\n", n, names)
	}
	if r.Kafka != nil {
		for _, t := range r.Kafka.Missing {
			fmt.Fprintf(w, "note: topic %s does not exist: nothing was written to it\n", t)
		}
	}
	for _, b := range r.BadMessages {
		fmt.Fprintf(w, "warning: skipped %s\n", b)
	}
	for _, s := range lastSnapshots(r.Snapshots) {
		fmt.Fprintf(w, "from snapshot %s of %s: %d objects (%d dropped as not shown by it)\n", s.ID, snapshotScopeName(s), s.Count, s.Dropped)
	}
	if len(r.Gaps) > 0 {
		reasons := map[string]int{}
		for _, g := range r.Gaps {
			reasons[g.Reason]++
		}
		var parts []string
		for k, n := range reasons {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "gap markers in the feed: %s\n", strings.Join(parts, ", "))
	}
	verdict := "ok: the feed matches the cluster"
	if !r.Match {
		verdict = fmt.Sprintf("%d objects differ", len(r.Differences))
	}
	var err error
	switch {
	case r.Kafka != nil:
		_, err = fmt.Fprintf(w, "%s (%d objects compared; topics %s, %d records read from %d partitions)\n", verdict, r.Compared, strings.Join(r.Topics, ", "), r.Kafka.Records, len(r.Kafka.Partitions))
	case r.Read != nil:
		_, err = fmt.Fprintf(w, "%s (%d objects compared; stream %s, %d messages read up to sequence %d)\n", verdict, r.Compared, r.Stream, r.Read.Messages, r.Read.LastSeq)
	}
	return err
}

// lastSnapshots keeps the last completed snapshot of each resource and
// namespace, in feed order.
func lastSnapshots(all []consumer.Snapshot) []consumer.Snapshot {
	last := map[string]int{}
	for i, s := range all {
		last[snapshotScopeName(s)] = i
	}
	var out []consumer.Snapshot
	for i, s := range all {
		if last[snapshotScopeName(s)] == i {
			out = append(out, s)
		}
	}
	return out
}

func snapshotScopeName(s consumer.Snapshot) string {
	n := s.Resource
	if s.Group != "" {
		n += "." + s.Group
	}
	if s.Namespace != "" {
		n += " -n " + s.Namespace
	}
	return n
}
