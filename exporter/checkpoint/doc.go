// Package checkpoint keeps what each sink was last delivered across
// restarts, behind exporter.Store.
//
// Guarantees:
//   - A record is written only after the sink acknowledged it (the exporter
//     calls Put after Send returned), in batches: a flusher writes every
//     dirty key in one transaction every FlushInterval and on Close. A crash
//     loses at most the last interval, whose changes are sent again after
//     the restart (duplicates carry the same id).
//   - By default the delivered state is kept (gzip-compressed JSON), so a
//     change missed while kubefeed was down arrives as a modified event
//     with a patch.
//   - Reads are served from memory; the backend is only written.
//
// Backends: File (bbolt, one bucket per sink) and KV (a JetStream key-value
// bucket, for several replicas).
package checkpoint
