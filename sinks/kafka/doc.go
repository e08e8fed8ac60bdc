// Package kafka is the Kafka sink: at-least-once delivery of CloudEvents to
// a topic, built on franz-go (kgo).
//
// Records. The record key is the object's uid, so all events of one object
// land on one partition, in the order they were sent (resourceVersion
// order); partitions are chosen as Kafka's own producers do (murmur2 of the
// key). A gap marker (io.kubefeed.gap) has no uid: it is written once to
// every partition of its topic, keyed by its id, so that a consumer of any
// partition sees it before the recovered events that follow it. Structured
// mode writes the CloudEvent JSON as the value with content-type
// application/cloudevents+json; binary mode follows the CloudEvents Kafka
// protocol binding: ce_* headers (the extensions included), content-type
// application/json, data as the value.
//
// Topics. The topic is a name or a template over {cluster}, {group} and
// {resource}. Each topic is checked on first use: when missing it is
// created (provision) or the send fails with an error saying so; its
// max.message.bytes must admit maxMessageBytes.
//
// Delivery. The producer is idempotent with acks=all (unless acks: leader).
// The sink is a sinks.AsyncSink: Publish encodes one object's events,
// takes a slot of the window per record (maxInFlight, all of a publish's
// slots at once, waiting with the caller's context while the window is
// full), hands the records to kgo in order and returns; done gets the
// outcome when kgo answered every record: nil when the broker acknowledged
// all of them, else the first failure, retryable for broker and network
// trouble, permanent for an event that can never be written. A publish
// not acknowledged within 30s (deliveryTimeout) is answered then (retryably,
// by a sweep once a second rather than a timer a publish);
// its records keep their slots until kgo gives them up, so kgo never
// buffers more than the window. done runs on a goroutine of the sink, never
// on kgo's promise goroutine, so it may take a moment or publish again.
// Send is Publish and a wait. The sink does not retry on its own beyond
// kgo's bounded per-record retries; the caller's queue retries what failed.
// Close waits (bounded by its context) for every outstanding ack, then
// fails the publishes still waiting, retryably; every done was called when
// it returns.
//
// Order. kgo keeps the records of a partition in the order they were
// handed over, and fails every record buffered behind one that failed, so
// the events of one publish (one object, one partition) are written in
// order or not after a failed one; the caller never has two publishes of
// one object outstanding.
//
// Stats count a publish once it is answered for good (acknowledged, or
// failed permanently): a retried publish is counted by the attempt that
// succeeded, not once per attempt.
//
// Sizes. Events larger than maxMessageBytes follow sinks.Encode's policy
// (drop oldObject, then reduce the object to its identity); an event that
// still does not fit is written as an identity stub to deadLetterTopic when
// one is configured, and otherwise dropped as a permanent error. All are
// counted in Stats.
package kafka
