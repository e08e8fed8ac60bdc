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

	"github.com/kubefeed/kubefeed/event"
)

// webhookBatch is the batch size of the webhook network mode.
const webhookBatch = 100

// ceilingPayload is what kubefeed sends for one of the benchmark's ~1 KiB
// ConfigMaps: the same CloudEvent, rendered by the same encoder, with the
// metadata the API server adds, so that the ceiling carries the same bytes
// per message as kubefeed does (1,684 bytes; a shorter stand-in made the
// ceiling look 15 % cheaper per message than kubefeed's own).
var ceilingPayload = func() []byte {
	const uid, rv = "6f1c2b1e-3a4d-4e5f-9a8b-7c6d5e4f3a2b", "1234567"
	obj := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{
		"name": "c12345", "namespace": "netbench", "uid": uid, "resourceVersion": rv,
		"creationTimestamp": "2026-11-30T00:31:57Z", "annotations": map[string]any{"bench/created": "1796000000000000000"}},
		"data": map[string]any{"payload": strings.Repeat("x", 900)}}
	e := &event.Event{SpecVersion: event.SpecVersion, ID: event.ID(uid, rv, event.Added), Source: "kubefeed/bench",
		Type: event.Added.Type(), Subject: "/api/v1/namespaces/netbench/configmaps/c12345", Time: time.Date(2026, 11, 30, 0, 31, 57, 123456789, time.UTC),
		DataContentType: event.DataContentType, Cluster: "bench", APIVersion: "v1", Kind: "ConfigMap", Resource: "configmaps",
		Namespace: "netbench", Name: "c12345", UID: uid, ResourceVersion: rv, Data: &event.ChangeData{Object: obj}}
	b, err := event.Marshal(e)
	if err != nil {
		panic(err) // a fixed event: cannot fail
	}
	return b
}()

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
			// An id as long as kubefeed's (uid.resourceVersion.change):
			// JetStream keeps each for its duplicate window.
			_, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(fmt.Sprintf("%036d.%d.added", i, 1234567+i)))
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
