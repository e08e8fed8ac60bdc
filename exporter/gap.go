package exporter

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/kubefeed/kubefeed/exporter/event"
)

// Gap reasons.
const (
	GapRestart        = "restart"         // kubefeed was not running
	GapRelist         = "relist"          // a watch expired or the API server restarted
	GapCheckpointLost = "checkpoint-lost" // the checkpoint could not be read
)

// gap is one io.kubefeed.gap marker of one scope, sent to a sink before the
// first recovered change of that scope, or at once when eager.
type gap struct {
	ev *event.Event
}

func newGap(cluster string, id scopeID, from, to time.Time, reason string) *gap {
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
		Resource:        id.GVR.Resource,
		Namespace:       id.Namespace,
		Data:            &event.GapData{Scope: id.String(), From: from.UTC(), To: to.UTC(), Reason: reason},
	}}
}

// gapKeyPrefix marks queue keys that stand for an eager gap marker.
const gapKeyPrefix = "\x00gap\x00"

func gapKey(g *gap) Key { return Key{Name: gapKeyPrefix + g.ev.ID} }

func isGapKey(k Key) bool { return strings.HasPrefix(k.Name, gapKeyPrefix) }
