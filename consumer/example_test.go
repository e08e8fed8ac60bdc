package consumer_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubefeed/kubefeed/consumer"
)

// Rebuild what a JetStream sink stored and print it. (Compiled, not run: it
// needs a NATS server; the README shows the same code.)
func ExampleReadJetStream() {
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	state := consumer.New(consumer.Options{
		OnGap: func(g consumer.Gap) { log.Printf("gap in %s: %s", g.Scope, g.Reason) },
	})
	res, err := consumer.ReadJetStream(ctx, js, state, consumer.ReadOptions{
		Stream:   "KUBEFEED",
		Subjects: []string{"kubefeed.prod-eu-1.>"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range state.Keys() {
		e, _ := state.Get(k)
		fmt.Println(k, e.UID, e.ResourceVersion)
	}
	log.Printf("read %d messages up to sequence %d", res.Messages, res.LastSeq)
}

// Apply works on events from anywhere: Kafka records, files, webhooks.
func ExampleState_Apply() {
	state := consumer.New(consumer.Options{})
	for _, line := range []string{
		`{"id":"u1.10.added","type":"io.kubefeed.resource.added","apiversion":"v1","resource":"configmaps","namespace":"shop","name":"web","uid":"u1","resourceversion":"10","data":{"object":{"metadata":{"name":"web","resourceVersion":"10"},"data":{"k":"v"}}}}`,
		`{"id":"u1.11.modified","type":"io.kubefeed.resource.modified","apiversion":"v1","resource":"configmaps","namespace":"shop","name":"web","uid":"u1","resourceversion":"11","data":{"object":{},"patch":[{"op":"replace","path":"/data/k","value":"w"}],"previousResourceVersion":"10"}}`,
	} {
		e, err := consumer.Decode([]byte(line))
		if err != nil {
			log.Fatal(err)
		}
		if err := state.Apply(e); err != nil {
			log.Fatal(err)
		}
	}
	e, _ := state.Get(consumer.Key{Resource: "configmaps", Namespace: "shop", Name: "web"})
	fmt.Println(e.ResourceVersion, e.Object["data"])
	// Output: 11 map[k:w]
}
