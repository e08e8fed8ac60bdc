package otlp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/sinks"
	"github.com/kubefeed/kubefeed/sinks/otlp"
	"github.com/kubefeed/kubefeed/sinks/sinktest"
)

var protocols = []string{otlp.ProtocolGRPC, otlp.ProtocolHTTP}

func TestConformance(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			col := newCollector(t)
			var broken atomic.Bool
			col.setJudge(func([]string) verdict {
				if !broken.Load() {
					return verdict{}
				}
				if proto == otlp.ProtocolGRPC {
					return verdict{err: status.Error(codes.Unavailable, "down")}
				}
				return verdict{http: http.StatusServiceUnavailable}
			})
			sinktest.Run(t, sinktest.Harness{
				New: func(t *testing.T) sinks.Sink {
					return newSink(t, col, proto, otlp.Config{Batch: 16, Linger: sinks.Duration{Duration: time.Millisecond}})
				},
				Received: col.acceptedIDs,
				Break:    func(*testing.T) { broken.Store(true) },
				Heal:     func(*testing.T) { broken.Store(false) },
			})
		})
	}
}

// retryInfo is a gRPC status with a RetryInfo detail.
func retryInfo(t *testing.T, c codes.Code, d time.Duration) error {
	t.Helper()
	st, err := status.New(c, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// outcome classifies a send's error for the tables below.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	if sinks.IsPermanent(err) {
		return "permanent"
	}
	if d, ok := sinks.RetryAfterOf(err); ok {
		return "retry after " + d.String()
	}
	return "retryable"
}

func TestGRPCCodesAsTheSpecificationSays(t *testing.T) {
	col := newCollector(t)
	s := newSink(t, col, otlp.ProtocolGRPC, otlp.Config{Batch: 1})
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"unavailable", status.Error(codes.Unavailable, "restarting"), "retryable"},
		{"unavailable throttled", retryInfo(t, codes.Unavailable, 2*time.Second), "retry after 2s"},
		{"resource exhausted with RetryInfo", retryInfo(t, codes.ResourceExhausted, 3*time.Second), "retry after 3s"},
		{"resource exhausted without RetryInfo", status.Error(codes.ResourceExhausted, "too big"), "permanent"},
		{"deadline exceeded", status.Error(codes.DeadlineExceeded, "late"), "retryable"},
		{"aborted", status.Error(codes.Aborted, "x"), "retryable"},
		{"data loss", status.Error(codes.DataLoss, "x"), "retryable"},
		{"invalid argument", status.Error(codes.InvalidArgument, "bad record"), "permanent"},
		{"unauthenticated", status.Error(codes.Unauthenticated, "who"), "retryable"}, // a rotated credential (errors.go)
		{"internal", status.Error(codes.Internal, "x"), "permanent"},
		{"unimplemented", status.Error(codes.Unimplemented, "x"), "permanent"},
		{"accepted", nil, "ok"},
	} {
		t.Run(c.name, func(t *testing.T) {
			col.setJudge(func([]string) verdict { return verdict{err: c.err} })
			err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
			if got := outcome(err); got != c.want {
				t.Fatalf("got %s (%v), want %s", got, err, c.want)
			}
		})
	}
}

func TestHTTPStatusesAsTheSpecificationSays(t *testing.T) {
	col := newCollector(t)
	s := newSink(t, col, otlp.ProtocolHTTP, otlp.Config{Batch: 1})
	for _, c := range []struct {
		name  string
		v     verdict
		want  string
		inErr string
	}{
		{"429 with Retry-After", verdict{http: 429, retry: "7"}, "retry after 7s", "429 Too Many Requests"},
		{"503 with Retry-After", verdict{http: 503, retry: "2"}, "retry after 2s", "503"},
		{"503", verdict{http: 503}, "retryable", "503"},
		{"502", verdict{http: 502}, "retryable", "502"},
		{"504", verdict{http: 504}, "retryable", "504"},
		{"400", verdict{http: 400, message: "bad log record"}, "permanent", "bad log record"},
		{"401", verdict{http: 401}, "retryable", "401"}, // a rotated credential (errors.go),
		{"500", verdict{http: 500}, "permanent", "500"},
		{"413", verdict{http: 413}, "permanent", "413"},
		{"accepted", verdict{}, "ok", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			col.setJudge(func([]string) verdict { return c.v })
			err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
			if got := outcome(err); got != c.want {
				t.Fatalf("got %s (%v), want %s", got, err, c.want)
			}
			if c.inErr != "" && !strings.Contains(err.Error(), c.inErr) {
				t.Errorf("error %q does not say %q", err, c.inErr)
			}
		})
	}
}

// A redirect is not followed (the headers would go elsewhere): retried
// later, naming where it pointed.
func TestHTTPRedirectIsNotFollowed(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/v1/logs?token=secret", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	cfg := otlp.Config{Endpoint: redirect.URL, Protocol: otlp.ProtocolHTTP, Headers: map[string]string{"Authorization": "Bearer s3cret-token"}}
	cfg.SetDefaults()
	s, err := otlp.New(otlp.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	err = s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
	if outcome(err) != "retryable" || !strings.Contains(err.Error(), "not followed") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("got %v: want a retryable error naming the redirect without its query", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect was followed %d times", n)
	}
}

// A partial success fails the rejected records' objects: alone in its
// request an object fails for good; among others every object of the
// request fails, retryably, and goes alone next time, which tells which
// one the collector rejects.
func TestPartialSuccessFailsTheRejectedRecords(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			col := newCollector(t)
			bad := sinktest.Event(2, 1).ID
			col.setJudge(func(ids []string) verdict {
				if slices.Contains(ids, bad) {
					return verdict{rejected: 1, message: "record too old"}
				}
				return verdict{}
			})
			// A long linger, so that the three publishes share a request.
			s := newSink(t, col, proto, otlp.Config{Batch: 3, Linger: sinks.Duration{Duration: time.Minute}})
			errs := make([]chan error, 3)
			for i := range errs {
				errs[i] = make(chan error, 1)
				if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(i+1, 1)}, func(err error) { errs[i] <- err }); err != nil {
					t.Fatal(err)
				}
			}
			for i, ch := range errs {
				err := <-ch
				if outcome(err) != "retryable" || !strings.Contains(err.Error(), "rejected 1 of 3 log records: record too old") {
					t.Fatalf("object %d: got %v, want a retryable error naming the rejection", i+1, err)
				}
			}
			if got := col.acceptedIDs(t); len(got) != 0 {
				t.Fatalf("accepted %v", got)
			}
			// Retried, each goes alone at once (no linger).
			for i := range 3 {
				err := s.Send(context.Background(), []*event.Event{sinktest.Event(i+1, 1)})
				want := "ok"
				if i+1 == 2 {
					want = "permanent"
				}
				if outcome(err) != want {
					t.Fatalf("retry of object %d: got %v, want %s", i+1, err, want)
				}
			}
			if got, want := col.acceptedIDs(t), []string{sinktest.Event(1, 1).ID, sinktest.Event(3, 1).ID}; !slices.Equal(got, want) {
				t.Fatalf("accepted %v, want %v", got, want)
			}
			// Isolation is spent: the next publishes share a request again.
			before := col.requestCount()
			var chans []chan error
			for i := range 3 {
				ch := make(chan error, 1)
				chans = append(chans, ch)
				if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(i+1, 2)}, func(err error) { ch <- err }); err != nil {
					t.Fatal(err)
				}
			}
			for _, ch := range chans {
				if err := <-ch; err != nil {
					t.Fatal(err)
				}
			}
			if n := col.requestCount() - before; n != 1 {
				t.Fatalf("3 objects took %d requests, want 1", n)
			}
		})
	}
}

// Every record rejected: every object of the request fails for good.
func TestPartialSuccessRejectingEverything(t *testing.T) {
	col := newCollector(t)
	col.setJudge(func(ids []string) verdict { return verdict{rejected: int64(len(ids))} })
	s := newSink(t, col, otlp.ProtocolGRPC, otlp.Config{Batch: 1})
	err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
	if outcome(err) != "permanent" || !strings.Contains(err.Error(), "rejected 1 of 1") {
		t.Fatalf("got %v", err)
	}
}

// A permanent refusal of a request of several objects isolates them too:
// only the object at fault is dropped.
func TestPermanentErrorOfASharedRequestIsolates(t *testing.T) {
	col := newCollector(t)
	bad := sinktest.Event(1, 1).ID
	col.setJudge(func(ids []string) verdict {
		if slices.Contains(ids, bad) {
			return verdict{err: status.Error(codes.InvalidArgument, "bad record")}
		}
		return verdict{}
	})
	s := newSink(t, col, otlp.ProtocolGRPC, otlp.Config{Batch: 2, Linger: sinks.Duration{Duration: time.Minute}})
	res := make(chan error, 2)
	for i := range 2 {
		if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(i+1, 1)}, func(err error) { res <- err }); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := <-res; outcome(err) != "retryable" {
			t.Fatalf("got %v, want retryable", err)
		}
	}
	if err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)}); outcome(err) != "permanent" {
		t.Fatalf("object 1 alone: got %v, want permanent", err)
	}
	if err := s.Send(context.Background(), []*event.Event{sinktest.Event(2, 1)}); err != nil {
		t.Fatalf("object 2 alone: %v", err)
	}
}

// Headers reach the collector on both protocols, compressed or not, and
// are scrubbed from what it answers.
func TestHeadersAndCompression(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("file-token-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, proto := range protocols {
		for _, comp := range []string{otlp.CompressionNone, otlp.CompressionGzip} {
			t.Run(proto+"/"+comp, func(t *testing.T) {
				col := newCollector(t)
				s := newSink(t, col, proto, otlp.Config{Batch: 1, Compression: comp,
					Headers: map[string]string{"X-Tenant": "team-a"}, HeaderFiles: map[string]string{"Authorization": tokenFile}})
				if err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)}); err != nil {
					t.Fatal(err)
				}
				col.mu.Lock()
				hdr, enc := col.headers[0], col.encoding[0]
				col.mu.Unlock()
				tenant, auth := hdr["x-tenant"]+hdr["X-Tenant"], hdr["authorization"]+hdr["Authorization"]
				if tenant != "team-a" || auth != "file-token-value" {
					t.Fatalf("headers %v", hdr)
				}
				wantEnc := ""
				if comp == otlp.CompressionGzip {
					wantEnc = "gzip"
				}
				if enc != wantEnc {
					t.Fatalf("encoding %q, want %q", enc, wantEnc)
				}
				col.setJudge(func([]string) verdict {
					return verdict{err: status.Error(codes.InvalidArgument, "token file-token-value refused"), http: 400, message: "token file-token-value refused"}
				})
				if proto == otlp.ProtocolHTTP {
					col.setJudge(func([]string) verdict { return verdict{http: 400, message: "token file-token-value refused"} })
				}
				err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 2)})
				if err == nil || strings.Contains(err.Error(), "file-token-value") || !strings.Contains(err.Error(), "<redacted>") {
					t.Fatalf("error %v: want the token scrubbed", err)
				}
			})
		}
	}
}

// A collector that is down: the export fails retryably, it does not hang.
func TestCollectorDownIsRetryable(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			endpoint := "127.0.0.1:1"
			if proto == otlp.ProtocolHTTP {
				endpoint = "http://127.0.0.1:1"
			}
			cfg := otlp.Config{Endpoint: endpoint, Protocol: proto, Timeout: sinks.Duration{Duration: 2 * time.Second}}
			cfg.SetDefaults()
			s, err := otlp.New(otlp.Options{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			err = s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
			if outcome(err) != "retryable" {
				t.Fatalf("got %v, want retryable", err)
			}
		})
	}
}

// Close waits for what was collected; later publishes fail.
func TestCloseFlushesCollected(t *testing.T) {
	col := newCollector(t)
	s := newSink(t, col, otlp.ProtocolGRPC, otlp.Config{Batch: 100, Linger: sinks.Duration{Duration: time.Hour}})
	res := make(chan error, 1)
	if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(1, 1)}, func(err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("close: %v", err)
	}
	if err := <-res; err != nil {
		t.Fatalf("collected publish: %v", err)
	}
	if got := col.acceptedIDs(t); len(got) != 1 {
		t.Fatalf("accepted %v", got)
	}
	if err := s.Publish(context.Background(), []*event.Event{sinktest.Event(1, 2)}, func(error) {}); err == nil || sinks.IsPermanent(err) {
		t.Fatalf("publish after close: %v, want a retryable error", err)
	}
}

// One object's events split over several requests (batch 1 here; a full
// batch or the byte budget in general) are sent one request after the
// other: when one fails, the ones after it are not sent, or the
// collector would hold a later version of the object before the retry
// brings the earlier one again (a receiver that drops duplicates by id
// then keeps the older version last).
func TestAnObjectsLaterEventIsNotSentAfterAnEarlierFailed(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			col := newCollector(t)
			first, second := sinktest.Event(1, 1), sinktest.Event(1, 2)
			var failed atomic.Bool
			col.setJudge(func(ids []string) verdict {
				if slices.Contains(ids, first.ID) && failed.CompareAndSwap(false, true) {
					if proto == otlp.ProtocolGRPC {
						return verdict{err: status.Error(codes.Unavailable, "restarting")}
					}
					return verdict{http: http.StatusServiceUnavailable}
				}
				return verdict{}
			})
			s := newSink(t, col, proto, otlp.Config{Batch: 1})
			err := s.Send(context.Background(), []*event.Event{first, second})
			if outcome(err) != "retryable" {
				t.Fatalf("got %v, want retryable", err)
			}
			if got := col.acceptedIDs(t); len(got) != 0 {
				t.Fatalf("the collector accepted %v after the object's earlier event failed", got)
			}
			if err := s.Send(context.Background(), []*event.Event{first, second}); err != nil {
				t.Fatal(err)
			}
			if got, want := col.acceptedIDs(t), []string{first.ID, second.ID}; !slices.Equal(got, want) {
				t.Fatalf("accepted %v, want %v", got, want)
			}
		})
	}
}

// A header file whose value gRPC metadata or HTTP cannot carry fails the
// sink's start, naming the header (not its value): it was sent as is,
// and gRPC failed every export with INTERNAL, a permanent error that
// dropped every event (HTTP retried them for ever).
func TestHeaderFileWithAValueTheProtocolCannotCarry(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		proto, value, want string
	}{
		{otlp.ProtocolGRPC, "line one\nline two\n", `header "Authorization" (from ` + dir + `/token): its value has a character gRPC metadata does not allow (printable ASCII only) at byte 8`},
		{otlp.ProtocolHTTP, "line one\nline two\n", `header "Authorization" (from ` + dir + `/token): its value has a control character at byte 8`},
	} {
		t.Run(c.proto, func(t *testing.T) {
			f := filepath.Join(dir, "token")
			if err := os.WriteFile(f, []byte(c.value), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := otlp.Config{Endpoint: "c:4317", Protocol: c.proto, HeaderFiles: map[string]string{"Authorization": f}}
			if c.proto == otlp.ProtocolHTTP {
				cfg.Endpoint = "http://c:4318"
			}
			cfg.SetDefaults()
			s, err := otlp.New(otlp.Options{Config: cfg})
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatal("New accepted the header file")
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "line one") {
				t.Fatalf("got %v, want %q and not the value", err, c.want)
			}
		})
	}
}

// A token in a header file rotated under a running sink (a Secret mounted
// as a file) is sent from the next export on; the exports the receiver
// refused with the old one (401, Unauthenticated, 403, PermissionDenied)
// are retried, not dropped.
func TestARotatedHeaderFileIsSentAfterTheReceiverRefusedTheOldOne(t *testing.T) {
	for _, proto := range []string{otlp.ProtocolGRPC, otlp.ProtocolHTTP} {
		for _, refusal := range []string{"unauthenticated", "forbidden"} {
			t.Run(proto+"/"+refusal, func(t *testing.T) {
				col := newCollector(t)
				f := filepath.Join(t.TempDir(), "token")
				if err := os.WriteFile(f, []byte("Bearer old-token\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				col.setJudge(func([]string) verdict {
					var auth string
					for k, v := range col.headers[len(col.headers)-1] { // handle holds col.mu
						if strings.EqualFold(k, "authorization") {
							auth = v
						}
					}
					if auth == "Bearer new-token" {
						return verdict{}
					}
					if refusal == "forbidden" {
						return verdict{err: status.Error(codes.PermissionDenied, "token "+auth+" may not write"), http: http.StatusForbidden}
					}
					return verdict{err: status.Error(codes.Unauthenticated, "bad token "+auth), http: http.StatusUnauthorized}
				})
				s := newSink(t, col, proto, otlp.Config{HeaderFiles: map[string]string{"Authorization": f}})
				err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
				if err == nil || sinks.IsPermanent(err) {
					t.Fatalf("refused with the old token: %v, want a retryable error", err)
				}
				if strings.Contains(err.Error(), "old-token") {
					t.Errorf("the error shows the token: %v", err)
				}
				if err := os.WriteFile(f, []byte("Bearer new-token\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(10 * time.Second)
				for {
					err := s.Send(context.Background(), []*event.Event{sinktest.Event(1, 1)})
					if err == nil {
						break
					}
					if sinks.IsPermanent(err) || time.Now().After(deadline) {
						t.Fatalf("after the rotation: %v", err)
					}
					time.Sleep(100 * time.Millisecond) // the file is looked at once per second
				}
				if got := col.acceptedIDs(t); len(got) != 1 {
					t.Fatalf("accepted %v", got)
				}
			})
		}
	}
}
