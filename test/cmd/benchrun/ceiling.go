package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// webhookBatch is the batch size of the webhook network mode.
const webhookBatch = 100

// ceilingPayload is about what kubefeed sends for a ~1 KiB ConfigMap (the
// CloudEvent envelope around the object).
var ceilingPayload = []byte(`{"specversion":"1.0","data":{"object":{"data":{"payload":"` + strings.Repeat("x", 1400) + `"}}}}`)

// ceilings are the modes that measure a sink's own rate through the same
// link, without kubefeed: what a tuned client of that sink achieves.
var ceilings = map[string]string{"ceiling-jetstream": "jetstream", "ceiling-webhook": "webhook"}

// runCeiling publishes n messages and prints READY and a result like an
// agent does.
func runCeiling(kind, target, run string, n int) error {
	fmt.Println("READY")
	var (
		start time.Time
		err   error
	)
	switch kind {
	case "jetstream":
		start, err = jetstreamCeiling(target, run, n)
	case "webhook":
		start, err = webhookCeiling(target, n)
	}
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	b, _ := json.Marshal(result{Mode: "ceiling-" + kind, Objects: n, Seconds: secs, Rate: float64(n) / secs})
	stopProfile()
	fmt.Println(string(b))
	return nil
}

// jetstreamCeiling publishes n messages with Msg-Id asynchronously, at
// most 4096 awaiting an ack (kubefeed's default maxPending), to a stream
// like the one kubefeed provisions.
func jetstreamCeiling(url, run string, n int) (time.Time, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return time.Time{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return time.Time{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "CEIL_" + run, Subjects: []string{"ceiling." + run + ".>"}, Storage: jetstream.FileStorage}); err != nil {
		return time.Time{}, err
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		msg := nats.NewMsg("ceiling." + run + ".configmaps.added")
		msg.Data = ceilingPayload
		for {
			_, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(fmt.Sprintf("%s-%d", run, i)))
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				continue
			}
			if err != nil {
				return start, err
			}
			break
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return start, ctx.Err()
	}
	return start, nil
}

// webhookCeiling posts n events in batches of webhookBatch, 4 requests in
// flight (the webhook sink's default maxInFlight).
func webhookCeiling(url string, n int) (time.Time, error) {
	parts := make([]string, webhookBatch)
	for i := range parts {
		parts[i] = string(ceilingPayload)
	}
	body := []byte("[" + strings.Join(parts, ",") + "]")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var sent atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent.Add(webhookBatch) <= int64(n)+webhookBatch-1 {
				resp, err := client.Post(url, "application/cloudevents-batch+json", bytes.NewReader(body))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return start, first
}
