package kafka

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kubefeed/kubefeed/sinks"
)

// errRecordTooLarge marks a record the broker refused for its size although
// it was within maxMessageBytes: the topic's limit changed under the sink.
var errRecordTooLarge = errors.New("record larger than the topic accepts")

// classify turns a record's failure into the sink's error classes. Only
// what can never succeed for this record is permanent; broker trouble,
// missing topics, denied access and timeouts are retryable (an operator
// can fix them, and the caller's queue holds the events meanwhile).
func classify(r *kgo.Record, err error) error {
	where := fmt.Sprintf("produce to %s", r.Topic)
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		// The topic is checked again before the retry, and the check names
		// the limit to change.
		return fmt.Errorf("%s: %w (%d bytes): %w", where, errRecordTooLarge, len(r.Value), err)
	case errors.Is(err, kerr.InvalidRecord), errors.Is(err, kerr.CorruptMessage), errors.Is(err, kerr.InvalidTopicException):
		return sinks.Permanent(fmt.Errorf("%s: %w", where, err))
	}
	return fmt.Errorf("%s: %w", where, err)
}

// isAuthError reports failures of credentials or permissions, which New
// reports instead of starting.
func isAuthError(err error) bool {
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.IllegalSaslState) ||
		errors.Is(err, kerr.UnsupportedSaslMechanism) || errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed)
}
