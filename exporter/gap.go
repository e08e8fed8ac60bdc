package exporter

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/resource"
)

// Gap reasons.
const (
	gapRestart        = "restart"         // kubefeed was not running
	gapRelist         = "relist"          // a watch expired or the API server restarted
	GapCheckpointLost = "checkpoint-lost" // the checkpoint could not be read
)

// gap is one io.kubefeed.gap marker of one scope, sent to a sink before the
// first recovered change of that scope, or at once when eager.
type gap struct {
	ev *event.Event
}

// newGap builds the marker of one scope of res. It carries the scope's
// apiVersion and kind, so subjects and routing group it with the scope's
// own events.
func newGap(cluster string, id scopeID, res resource.Resource, from, to time.Time, reason string) *gap {
	h := sha256.Sum256([]byte(id.String() + "|" + reason + "|" + strconv.FormatInt(from.UnixNano(), 10)))
	return &gap{ev: &event.Event{
		SpecVersion:     event.SpecVersion,
		ID:              "gap." + hex.EncodeToString(h[:12]),
		Source:          "kubefeed/" + cluster,
		Type:            event.TypeGap,
		Subject:         "/scopes/" + strings.ReplaceAll(id.String(), " ", "/"),
		Time:            to.UTC(),
		DataContentType: event.DataContentType,
		Cluster:         cluster,
		APIVersion:      res.APIVersion(),
		Kind:            res.GVK.Kind,
		Resource:        id.GVR.Resource,
		Namespace:       id.Namespace,
		Data:            &event.GapData{Scope: id.String(), From: from.UTC(), To: to.UTC(), Reason: reason},
	}}
}
