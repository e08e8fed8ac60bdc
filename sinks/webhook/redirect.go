package webhook

import (
	"net/http"
	"net/url"
	"strings"
)

// maxRedirects bounds a chain of followed same-host redirects.
const maxRedirects = 5

// checkRedirect returns the client's redirect policy for target (the
// configured URL). Returning http.ErrUseLastResponse hands the 3xx to
// post, which reports it as a retryable failure.
func checkRedirect(policy string, target *url.URL) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if policy != FollowRedirectsSameHost || len(via) > maxRedirects {
			return http.ErrUseLastResponse
		}
		if req.Response == nil {
			return http.ErrUseLastResponse
		}
		// 301, 302 and 303 turn a POST into a GET without body.
		if c := req.Response.StatusCode; c != http.StatusTemporaryRedirect && c != http.StatusPermanentRedirect {
			return http.ErrUseLastResponse
		}
		if !sameOrigin(req.URL, target) || req.Method != http.MethodPost || (via[0].ContentLength != 0 && req.GetBody == nil) {
			return http.ErrUseLastResponse
		}
		return nil
	}
}

// sameOrigin compares scheme, host and port (default ports made explicit).
// Go's client keeps Authorization on a redirect to another port of the
// same host, and every custom header on any redirect: this is stricter.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}
