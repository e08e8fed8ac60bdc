package checkpoint

import (
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// compact rewrites the file without its free pages. bbolt does not clear
// the pages a rewrite frees, so after legacy records (raw state) were
// written back without state, their old bytes would stay in the file
// until reused; compaction drops them. The caller holds f.mu.
func (f *File) compact() error {
	tmp := f.path + ".compact"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("compact checkpoint: %w", err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("compact checkpoint: %w", err)
	}
	if err := bolt.Compact(dst, f.db, 16<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact checkpoint: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact checkpoint: %w", err)
	}
	// Swap: the old file stays open (and locked) until the new one is in
	// place, then the new one is opened and locked.
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact checkpoint: %w", err)
	}
	if err := f.db.Close(); err != nil {
		f.log.Warn("closing the checkpoint file before compaction", zap.Error(err))
	}
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		// Without a file no flush can succeed; they report it.
		return fmt.Errorf("reopen compacted checkpoint: %w", err)
	}
	f.db = db
	return nil
}
