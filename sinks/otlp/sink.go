package otlp

import (
	"context"
	"fmt"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
)

// Options of the sink. Config is required (defaults applied); Version
// (kubefeed's, the records' scope version) and Logger may be empty.
type Options struct {
	Config  Config
	Version string
	Logger  *zap.Logger
}

// Sink exports events as OTLP log records.
type Sink struct {
	cfg     Config
	shape   shape
	client  client
	target  string     // the endpoint as logs may show it
	headers *headerSet // the headers, files read again when they change
	log     *zap.Logger
	closed  atomic.Bool
	batcher *batcher
}

var _ sinks.AsyncSink = (*Sink)(nil)

// New reads the header files and builds the client; it does not connect
// (a Collector that is down fails exports, which are retried).
func New(o Options) (*Sink, error) {
	c := o.Config
	c.SetDefaults()
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Sink{cfg: c, shape: shape{name: c.Shape, version: o.Version}, target: sinks.SafeURL(c.Endpoint), log: log}
	hs, err := newHeaderSet(c.Headers, c.HeaderFiles, c.checkHeaderValue)
	if err != nil {
		return nil, err
	}
	s.headers = hs
	switch c.Protocol {
	case ProtocolGRPC:
		s.client, err = newGRPCClient(c, hs)
	case ProtocolHTTP:
		s.client, err = newHTTPClient(c, hs)
	default:
		err = fmt.Errorf("otlp protocol %q: must be %s or %s", c.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	if err != nil {
		return nil, err
	}
	s.batcher = newBatcher(s)
	return s, nil
}

// scrub removes header values from text the receiver controls.
func (s *Sink) scrub(text string) string { return s.headers.scrub(text) }

// Send exports the events and waits for the answer: Publish, then the
// outcome (or ctx's end, the events then perhaps delivered).
func (s *Sink) Send(ctx context.Context, events []*event.Event) error {
	return sinks.Await(ctx, "otlp export to "+s.target, func(done func(error)) error { return s.Publish(ctx, events, done) })
}

// Close exports what was collected, waits (bounded by ctx) for the
// requests in flight and closes the connection.
func (s *Sink) Close(ctx context.Context) error {
	s.closed.Store(true)
	s.batcher.close(ctx)
	return s.client.close()
}
