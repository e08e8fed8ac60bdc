package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/kubefeed/kubefeed/test/cluster"
)

// Events mode: core/v1 Events, as kubernetes-event-exporter's users
// export them. A bare typed informer (protobuf, as client-go's generated
// informers decode them) is the baseline; kubefeed watches the same Events
// to a file, to JetStream, and to a file with enrich: involvedObject.
// eventModes in the order of the report; runs rotate it (see runEvents).
var eventModes = []string{"events-bare", "kubefeed-events-file", "kubefeed-events-enrich", "kubefeed-events-jetstream"}

// eventsRuns is how many runs the Events mode makes: its targets are ratios
// of a few percent (enrichment ≤ 10 %) on a machine whose load moves single
// runs by more than that, so it takes more runs than the other modes.
var eventsRuns = flag.Int("events-runs", 5, "runs of the Events mode (medians are reported)")

// eventLoads: a steady ~300/s from 8 writers and a burst from 32.
var eventLoads = []struct {
	name          string
	rate, writers int
}{{"steady-300", 300, 8}, {"burst", 0, 32}}

// eventPods is how many Pods the Events point at (enrichment finds them).
const eventPods = 50

// runEvents measures every Events mode under every load, runs times, and
// the memory of 20k cached Events (when mem > 0).
func runEvents(cp *cluster.ControlPlane, cs *kubernetes.Clientset, natsURL, dir string, n, runs, mem int, rep *report) error {
	if rep.Events == nil {
		rep.Events = map[string][]result{}
	}
	rep.EventsDate = time.Now().UTC().Format(time.RFC3339)
	seq := 0
	for r := 0; r < runs; r++ {
		// Each run starts at another mode, so that no mode always follows
		// the same one: a run can slow the one after it (its file's
		// writeback, the API server's garbage collection of thousands of
		// Events), and a fixed order put that on one mode every time.
		order := append(append([]string(nil), eventModes[r%len(eventModes):]...), eventModes[:r%len(eventModes)]...)
		for _, load := range eventLoads {
			for _, mode := range order {
				seq++
				ns := fmt.Sprintf("ev%d-%d", time.Now().Unix()%100000, seq)
				if err := createNS(cs, ns); err != nil {
					return err
				}
				if err := createPods(cs, ns, eventPods); err != nil {
					return err
				}
				res, err := startAgent(cp, natsURL, dir, mode, ns, n, func() error { return writeEvents(cs, ns, n, load.rate, load.writers) })
				if err != nil {
					return fmt.Errorf("%s %s: %w", load.name, mode, err)
				}
				fmt.Printf("events %-10s %-26s %7.0f/s  %.3f CPU-s/1k  %6.1f MiB\n", load.name, mode, res.Rate, res.CPUPer1k, res.RSSMiB)
				rep.Events[load.name+"/"+mode] = append(rep.Events[load.name+"/"+mode], res)
			}
		}
	}
	if mem > 0 {
		ns := fmt.Sprintf("evm%d", time.Now().Unix()%100000)
		if err := createNS(cs, ns); err != nil {
			return err
		}
		if err := writeEvents(cs, ns, mem, 0, 32); err != nil {
			return err
		}
		for _, mode := range []string{"events-bare-dynamic", "kubefeed-events-discard"} {
			res, err := startAgent(cp, natsURL, dir, mode, ns, 0, nil)
			if err != nil {
				return err
			}
			res.Objects = mem
			fmt.Printf("events memory %-24s %d Events: %.1f MiB\n", mode, mem, res.RSSMiB)
			rep.Events["memory/"+mode] = []result{res}
		}
	}
	return nil
}

func createPods(cs *kubernetes.Clientset, ns string, n int) error {
	for i := 0; i < n; i++ {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Labels: map[string]string{"app": "web", "shard": strconv.Itoa(i % 5)},
			Annotations: map[string]string{"team": "bench"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}}
		if _, err := cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// writeEvents creates n core Events as the kubelet writes them (legacy
// fields, a Warning in four), at rate per second or as fast as the
// writers go.
func writeEvents(cs *kubernetes.Clientset, ns string, n, rate, writers int) error {
	return paced(n, rate, writers, func(i int) error {
		now := metav1.NewTime(time.Now())
		pod := fmt.Sprintf("web-%d", i%eventPods)
		typ := corev1.EventTypeNormal
		if i%4 == 0 {
			typ = corev1.EventTypeWarning
		}
		ev := &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%016x", pod, i),
				Annotations: map[string]string{"bench/created": strconv.FormatInt(now.UnixNano(), 10)}},
			InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod, FieldPath: "spec.containers{app}"},
			Reason:         "BackOff", Message: "Back-off restarting failed container app in pod " + pod + "_" + ns, Type: typ,
			Source:         corev1.EventSource{Component: "kubelet", Host: "node-1"},
			FirstTimestamp: now, LastTimestamp: now, Count: 1,
			ReportingController: "kubelet", ReportingInstance: "node-1",
		}
		_, err := cs.CoreV1().Events(ns).Create(context.Background(), ev, metav1.CreateOptions{})
		return err
	})
}

// typedEventsInformer is the baseline: client-go's generated informer for
// core Events, decoding protobuf, counting adds.
func typedEventsInformer(ctx context.Context, rc *rest.Config, ns string, onAdd func()) (cache.SharedIndexInformer, error) {
	pc := rest.CopyConfig(rc)
	pc.ContentType = "application/vnd.kubernetes.protobuf"
	pc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(pc)
	if err != nil {
		return nil, err
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Events().Informer()
	_ = inf.SetTransform(func(o any) (any, error) {
		if m, ok := o.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return o, nil
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(any) { onAdd() }})
	go inf.Run(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
	return inf, nil
}
