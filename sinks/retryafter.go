package sinks

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter caps the wait a receiver asks for with Retry-After.
const MaxRetryAfter = 5 * time.Minute

// ParseRetryAfter reads an HTTP Retry-After header, seconds or an HTTP
// date, capped at MaxRetryAfter (a number of seconds too large to parse
// is the cap); ok is false when the header is absent or unreadable.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if allDigits(v) {
		n, err := strconv.Atoi(v)
		if err != nil || n > int(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true // beyond the cap (or int)
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), MaxRetryAfter), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
