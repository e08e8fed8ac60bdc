package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/test/cluster"
	"github.com/kubefeed/kubefeed/test/netdelay"
)

// netRuns is how many ceiling/kubefeed pairs each network row takes its
// median from: a drain of 20,000 objects lasts half a second, and the
// machine's load moves a single pair's ratio by ±0.15.
var netRuns = flag.Int("net-runs", 5, "ceiling/kubefeed pairs per delay in the network runs (the median ratio is reported)")

// netRow is one link delay: each sink's own ceiling through the link and
// kubefeed's drain rate (initialList: emit of the same objects) through it.
type netRow struct {
	DelayMillis     float64 `json:"delayMsEachWay"`
	Objects         int     `json:"objects"`
	JetStreamCeil   result  `json:"jetstreamCeiling"`
	JetStream       result  `json:"jetstream"`
	WebhookCeil     result  `json:"webhookCeiling"`
	Webhook         result  `json:"webhook"`
	WebhookBatch    int     `json:"webhookBatch"`
	JetStreamWindow int     `json:"jetstreamMaxPending"`
	Pairs           int     `json:"pairs,omitempty"` // ceiling/kubefeed pairs the row is the median of
}

// receiver answers every request at once, as a webhook that keeps up.
func receiver() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// network creates objects ConfigMaps once, then for each delay measures,
// through a delay proxy, JetStream's and the webhook's own ceilings and
// kubefeed draining the objects into each.
// Each sink's ceiling and kubefeed's drain run back to back as a pair,
// runs pairs at each delay; the pair with the median ratio is reported.
func network(cp *cluster.ControlPlane, cs *kubernetes.Clientset, natsURL, dir string, objects, runs int, delays []time.Duration) ([]netRow, error) {
	const ns = "netbench"
	if err := createNS(cs, ns); err != nil {
		return nil, err
	}
	if err := write(cs, ns, objects, 0); err != nil {
		return nil, err
	}
	u, err := url.Parse(natsURL)
	if err != nil {
		return nil, err
	}
	recv, stopRecv, err := receiver()
	if err != nil {
		return nil, err
	}
	defer stopRecv()
	var rows []netRow
	for i, d := range delays {
		row := netRow{DelayMillis: float64(d) / float64(time.Millisecond), Objects: objects, WebhookBatch: webhookBatch, JetStreamWindow: 4096, Pairs: max(runs, 1)}
		np, err := netdelay.Start(u.Host, d)
		if err != nil {
			return nil, err
		}
		hp, err := netdelay.Start(recv, d)
		if err != nil {
			np.Close()
			return nil, err
		}
		natsVia := "nats://" + np.Addr()
		hookVia := "http://" + hp.Addr() + "/events"
		// Each sink's ceiling and kubefeed run back to back, as a pair, and
		// the pairs alternate: the machine's load drifts over minutes, so a
		// ratio is only taken within a pair. The pair with the median ratio
		// is reported.
		for _, sink := range []struct {
			ceiling, kubefeed, target string
			ceil, got                 *result
		}{
			{"ceiling-jetstream", "kubefeed-jetstream-emit", natsVia, &row.JetStreamCeil, &row.JetStream},
			{"ceiling-webhook", "kubefeed-webhook-emit", hookVia, &row.WebhookCeil, &row.Webhook},
		} {
			var pairs [][2]result
			for k := 0; k < max(runs, 1); k++ {
				var pair [2]result
				for j, mode := range []string{sink.ceiling, sink.kubefeed} {
					run := fmt.Sprintf("n%d_%d_%s", i, k, strings.ReplaceAll(mode, "-", "_"))
					res, err := startAgentRun(cp, sink.target, dir, mode, ns, run, objects, nil)
					if err != nil {
						np.Close()
						hp.Close()
						return nil, fmt.Errorf("%s at %v: %w", mode, d, err)
					}
					pair[j] = res
				}
				pairs = append(pairs, pair)
			}
			med := medianBy(pairs, func(p [2]result) float64 { return p[1].Rate / p[0].Rate })
			*sink.ceil, *sink.got = med[0], med[1]
			fmt.Printf("network %v each way %-24s %7.0f events/s\n", d, sink.ceiling, med[0].Rate)
			fmt.Printf("network %v each way %-24s %7.0f events/s (%.2f× its ceiling; the median ratio of %d pairs)\n", d, sink.kubefeed, med[1].Rate, med[1].Rate/med[0].Rate, len(pairs))
		}
		np.Close()
		hp.Close()
		rows = append(rows, row)
	}
	return rows, nil
}
