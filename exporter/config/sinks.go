package config

import (
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/natsconn"
)

// The blocks of the file that configure sinks belong to the sink packages:
// each owns its type, its defaults and its checks (sinks.Problem), and this
// package assembles them and places their problems in the file. The names
// below are those blocks as the config package has always called them.

// TLS is a client TLS block.
type TLS = sinks.TLS

// Duration is a time.Duration written as "30s", "10m".
type Duration = sinks.Duration

// NATSConnection is how a sink or checkpoint connects to NATS.
type NATSConnection = natsconn.Config

// DefaultSubject is the subject template of the NATS sinks.
const DefaultSubject = natsconn.DefaultSubject
