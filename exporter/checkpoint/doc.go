// Package checkpoint keeps what each sink was last delivered across
// restarts, behind exporter.Store.
//
// Guarantees:
//   - A record is written only after the sink acknowledged it (the exporter
//     calls Put after Send returned), in batches: a flusher writes every
//     dirty key in one transaction every FlushInterval, when Sync asks,
//     and on Close. A crash loses at most the last interval, whose changes
//     are sent again after the restart (duplicates carry the same id).
//   - By default the delivered state is kept (gzip-compressed JSON), as the
//     delivering rule redacts it (Record.Redact): nothing rests that the
//     sink was not allowed to receive. Records of older versions (raw
//     state) are restored, then written back without state until Put again.
//     Numbers restore as the API server's objects decode (int64 or float64).
//   - No record wedges the others: one the backend refuses (too large) is
//     stored without state, or skipped if even that is refused; counted,
//     logged once per key, never retried. Transient failures are retried;
//     Sync and Flush return when their context ends, Close within 10s. A KV
//     put or delete waits at most 5s for its ack (kvOpTimeout), so an ack
//     lost with a NATS node fails that flush quickly; it is written again
//     on the next connection.
//   - A file held by another process is never moved aside (ErrLocked); an
//     unreadable one is (ErrCorrupt). Files are 0600, directories 0700.
//   - Reads are served from memory; the backend is only written.
//
// Backends: File (bbolt, one bucket per sink) and KV (a JetStream key-value
// bucket, for several replicas).
package checkpoint
