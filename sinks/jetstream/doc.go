// Package jetstream is the NATS JetStream sink: at-least-once delivery with
// de-duplication by event id.
//
// Every event is published with Nats-Msg-Id set to its id, asynchronously,
// with a bounded number of publishes awaiting their ack (maxPending). Send
// returns only when every PubAck of its events arrived, so a key is done for
// this sink only after JetStream stored it; PubAck.Duplicate is counted. A
// publish whose ack does not come in time (defaultAckTimeout, 10s), or
// whose connection is lost before it, fails the Send, and the key is
// retried by the caller's queue; the same id makes the retry a duplicate
// that the stream drops within its duplicate window.
//
// The sink reads the acks itself (acks.go): one reply subscription, a
// table of the messages awaiting theirs, and one ticker for the timeouts,
// instead of nats.go's per-message futures and timers. A publish that no
// stream answers (the stream was deleted, or does not hold the subject)
// fails retryably naming the stream and subject, and the next publish
// checks the stream again: with provision it is created anew, without it
// the error says the stream is missing.
//
// Events larger than the server's max payload follow sinks.Encode's policy
// (drop oldObject, then reduce the object to its identity); an event that
// still does not fit is published as an identity stub to deadLetterSubject
// when one is configured, and otherwise dropped as a permanent error (after
// the acks of the events published before it). Both are counted. A
// provisioned stream with default subjects also covers deadLetterSubject;
// an existing stream must hold it, or New says so.
package jetstream
