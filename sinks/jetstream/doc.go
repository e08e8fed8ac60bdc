// Package jetstream is the NATS JetStream sink: at-least-once delivery with
// de-duplication by event id.
//
// Every event is published with Nats-Msg-Id set to its id, asynchronously,
// with a bounded number of publishes awaiting their ack (maxPending). Send
// returns only when every PubAck of its events arrived, so a key is done for
// this sink only after JetStream stored it; PubAck.Duplicate is counted. A
// publish whose ack does not come in time fails the Send, and the key is
// retried by the caller's queue; the same id makes the retry a duplicate
// that the stream drops within its duplicate window.
//
// Events larger than the server's max payload follow sinks.Encode's policy
// (drop oldObject, then reduce the object to its identity); an event that
// still does not fit is published as an identity stub to deadLetterSubject
// when one is configured, and otherwise dropped as a permanent error (after
// the acks of the events published before it). Both are counted. A
// provisioned stream with default subjects also covers deadLetterSubject;
// an existing stream must hold it, or New says so.
package jetstream
