// Package natsconn is what the NATS sinks (and the JetStream checkpoint)
// share: the connection keys of their config blocks (Config, with its
// Validate) and connecting with the options users expect (several servers,
// user/password, token, NKey seed, credentials file, TLS, reconnect forever
// with backoff, secrets never logged), and subject templates whose tokens
// are escaped so no value can add tokens or wildcards (CheckSubjectTemplate
// is the check the config applies to them).
package natsconn
