// Package deadletter keeps the events a sink rejects permanently, so that
// none is dropped silently: Wrap puts a file of JSON lines behind any sink.
//
// Each record carries the event as the sink got it (events are redacted
// before they reach a sink), the reason (the sink's error, which never holds
// its credentials), the HTTP status when there is one, the sink's name and
// the time. The file is created 0600 in a directory created 0700, and each
// write is fsynced.
//
// When a send of several events fails permanently, the events are sent again
// one by one, so that only the ones the destination rejects are
// dead-lettered (the others may arrive twice, with the same id). If the
// dead-letter file cannot be written, the send fails retryably: the events
// stay in the queue until they are delivered or kept.
package deadletter
