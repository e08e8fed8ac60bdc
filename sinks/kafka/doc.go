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
// Send returns only when the broker acknowledged every record of its
// events, or with an error: retryable for broker and network trouble (the
// records are produced with the send's context, so kgo gives them up when
// it ends; the caller's queue retries), permanent for an event that cannot
// ever be written. The sink does not retry on its own beyond kgo's bounded
// per-record retries inside the send's deadline.
//
// Sizes. Events larger than maxMessageBytes follow sinks.Encode's policy
// (drop oldObject, then reduce the object to its identity); an event that
// still does not fit is written as an identity stub to deadLetterTopic when
// one is configured, and otherwise dropped as a permanent error. All are
// counted in Stats.
package kafka
