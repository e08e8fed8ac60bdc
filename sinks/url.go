package sinks

import (
	"net/url"
	"strings"
)

// SafeURL renders a URL for logs and errors: scheme, host and port only.
// User info, path, query and fragment may carry secrets (Slack-style tokens
// in the path, API keys in the query), so they are replaced by "…". Every
// sink that shows a URL uses it.
func SafeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<unparsable url>"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		out += "/…"
	}
	return out
}

// SafeURLs renders a list of URLs with SafeURL, comma-separated.
func SafeURLs(raw []string) string {
	out := make([]string, len(raw))
	for i, s := range raw {
		out[i] = SafeURL(s)
	}
	return strings.Join(out, ",")
}
