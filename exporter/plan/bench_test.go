package plan

import (
	"testing"
	"time"

	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/state"
	"github.com/kubefeed/kubefeed/internal/fixture"
)

func BenchmarkFilterCEL(b *testing.B) {
	r := testRule(b, config.Watch{Resource: "pods", Filter: "type == 'MODIFIED' && object.status.phase == 'Running' && changedPaths.exists(p, p.startsWith('/spec'))"})
	a, c := fixture.Pod("p", 1), fixture.Pod("p", 2)
	ch := Change{Kind: event.Modified, Obj: c, prev: recordOf(a)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := render(NewOrigin("bench"), fixture.Pods, state.Key{}, ch, MetaOf(ch.Obj), r, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnvelopeEncode(b *testing.B) {
	r := testRule(b, config.Watch{Resource: "pods"})
	a, c := fixture.Pod("p", 1), fixture.Pod("p", 2)
	ev, _ := render(NewOrigin("bench"), fixture.Pods, state.Key{Namespace: "bench", Name: "p"}, Change{Kind: event.Modified, Obj: c, prev: recordOf(a)}, MetaOf(c), r, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}
