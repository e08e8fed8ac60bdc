package webhook

import (
	"fmt"
	"net/url"
	"time"

	"github.com/kubefeed/kubefeed/sinks"
)

// Redirect policies (followRedirects).
const (
	FollowRedirectsNever    = "never"
	FollowRedirectsSameHost = "sameHost"
)

// defaultTimeout bounds one request by default (defaultLinger and
// defaultMaxInFlight are the window's, batch.go).
const defaultTimeout = 10 * time.Second

// Config is the sink's block of the config file (webhook:): CloudEvents
// POSTed over HTTP.
type Config struct {
	URL string `yaml:"url"`
	// Mode: structured (default) or binary.
	Mode string `yaml:"mode"`
	// Types: kubefeed (default) or knative, Knative ApiServerSource's
	// type names for added, modified and deleted (README, Knative).
	Types string `yaml:"types"`
	// Headers added to every request.
	Headers map[string]string `yaml:"headers"`
	// HeaderFiles: header name -> file whose content is the value.
	HeaderFiles map[string]string `yaml:"headerFiles"`
	// BearerTokenFile is sent as Authorization: Bearer <token>.
	BearerTokenFile string `yaml:"bearerTokenFile"`
	// Timeout of one request (default 10s).
	Timeout sinks.Duration `yaml:"timeout"`
	TLS     *sinks.TLS     `yaml:"tls"`
	// Batch sends up to this many events, of different objects, per
	// request as application/cloudevents-batch+json (0 or 1: one event per
	// request).
	Batch int `yaml:"batch"`
	// Linger is how long a batch waits for more events after its first
	// (default 50ms; only with batch > 1).
	Linger sinks.Duration `yaml:"linger"`
	// MaxInFlight bounds the requests in flight at once (default 4); up
	// to batch×maxInFlight objects wait or are in flight.
	MaxInFlight int `yaml:"maxInFlight"`
	// FollowRedirects: "never" (default) or "sameHost" (307 and 308 to the
	// same scheme, host and port only, method and body kept).
	FollowRedirects string `yaml:"followRedirects"`
	// RetryOn and PermanentOn override how response statuses are treated
	// (default: 401, 403, 404, 408, 409, 429 and 5xx retried, other 4xx
	// permanent).
	RetryOn     []int `yaml:"retryOn"`
	PermanentOn []int `yaml:"permanentOn"`
}

// SetDefaults fills in the documented defaults.
func (c *Config) SetDefaults() {
	if c.Mode == "" {
		c.Mode = sinks.ModeStructured
	}
	if c.Timeout.Duration == 0 {
		c.Timeout.Duration = defaultTimeout
	}
	if c.FollowRedirects == "" {
		c.FollowRedirects = FollowRedirectsNever
	}
	if c.Batch > 1 && c.Linger.Duration == 0 {
		c.Linger.Duration = defaultLinger
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = defaultMaxInFlight
	}
}

// Validate checks the block (defaults applied).
func (c *Config) Validate() []sinks.Problem {
	var ps sinks.Problems
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.At("url", "must be an http or https URL")
	}
	ps.Nest("mode", sinks.ValidateMode(c.Mode))
	ps.Nest("types", sinks.ValidateTypes(c.Types))
	if c.Batch < 0 {
		ps.At("batch", "must not be negative")
	}
	if c.Linger.Duration > 0 && c.Batch <= 1 {
		ps.At("linger", "only applies with batch > 1")
	}
	if c.MaxInFlight < 0 {
		ps.At("maxInFlight", "must not be negative")
	}
	for h := range c.Headers {
		if _, dup := c.HeaderFiles[h]; dup {
			ps.At("headerFiles", "header %q is set in headers too", h)
		}
	}
	// What keeps headers, the token and events where they belong: the
	// redirect policy and how statuses are classified.
	switch c.FollowRedirects {
	case "", FollowRedirectsNever, FollowRedirectsSameHost:
	default:
		ps.At("followRedirects", "must be %s or %s, got %q", FollowRedirectsNever, FollowRedirectsSameHost, c.FollowRedirects)
	}
	retry := map[int]bool{}
	for i, code := range c.RetryOn {
		if code < 300 || code > 599 {
			ps.At(fmt.Sprintf("retryOn[%d]", i), "must be an HTTP status from 300 to 599, got %d", code)
		}
		retry[code] = true
	}
	for i, code := range c.PermanentOn {
		if code < 300 || code > 599 {
			ps.At(fmt.Sprintf("permanentOn[%d]", i), "must be an HTTP status from 300 to 599, got %d", code)
		} else if retry[code] {
			ps.At(fmt.Sprintf("permanentOn[%d]", i), "status %d is in retryOn too", code)
		}
	}
	return ps
}

// format is how the sink writes events: mode and types.
func (c *Config) format() sinks.Format { return sinks.Format{Mode: c.Mode, Types: c.Types} }
