package checkpoint

import (
	"errors"
	"fmt"

	"github.com/kubefeed/kubefeed/exporter/state"
	"go.uber.org/zap"
)

// errTooLarge is what writeRecord reports to itself for a record over the
// backend's size limit.
var errTooLarge = errors.New("record larger than the backend accepts")

// recordWriter is how one backend writes: put stores one value, permanent
// tells refusals that no retry can fix (too large, bad key) from transient
// failures, and limit, when positive, is the largest value it accepts.
type recordWriter struct {
	put       func(v []byte) error
	permanent func(error) bool
	limit     int
}

// write stores one dirty record. A record the backend refuses permanently
// is stored shrunk, with its uid, version and scope but without its state,
// so that a restart still knows the object (a later change is then sent
// without a patch, a deletion is still seen); if even that is refused, the
// record is skipped. Both are counted and logged once per key; neither
// is retried. Only a transient failure is returned, for the caller to keep
// the record dirty.
func (c *committer) write(w recordWriter, log *zap.Logger, sink string, k state.Key, d dirty, keepState bool) error {
	id := sink + " " + keyString(k)
	full := keepState && !d.strip && d.rec.Object != nil
	reason := error(nil)
	if full {
		v, err := encodeRecord(*d.rec, true)
		switch {
		case err != nil:
			reason = err
		case w.limit > 0 && len(v) > w.limit:
			reason = fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, len(v), w.limit)
		default:
			err = w.put(v)
			if err == nil {
				c.unnote(id)
				return nil
			}
			if !w.permanent(err) {
				return err
			}
			reason = err
		}
	}
	v, err := encodeRecord(*d.rec, false)
	if err == nil {
		err = w.put(v)
		if err != nil && !w.permanent(err) {
			return err
		}
	}
	switch {
	case err == nil && reason == nil:
		c.unnote(id)
	case err == nil:
		c.shrunk.Add(1)
		if c.note(id) {
			log.Warn("checkpoint record stored without its state: after a restart, the next change of this object is sent without a patch",
				zap.String("sink", sink), zap.String("key", keyString(k)), zap.Error(reason))
		}
	default:
		c.refused.Add(1)
		if c.note(id) {
			log.Error("checkpoint record refused by the backend; skipped: after a restart this object looks new",
				zap.String("sink", sink), zap.String("key", keyString(k)), zap.Error(err))
		}
	}
	return nil
}
