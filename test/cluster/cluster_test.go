package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/kubefeed/kubefeed/exporter/shard"
	"github.com/kubefeed/kubefeed/test/cluster"
)

func TestConfigMapLifecycleAndWatch(t *testing.T) {
	cp := cluster.StartT(t, cluster.Options{})
	cs := cp.APIServer().Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.37.2" {
		t.Errorf("server version = %q, want v1.37.2", v.GitVersion)
	}

	cms := cs.CoreV1().ConfigMaps("default")
	w, err := cms.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["a"] = "2"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "smoke", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []watch.EventType{watch.Added, watch.Modified, watch.Deleted}
	for i, typ := range want {
		select {
		case ev := <-w.ResultChan():
			if ev.Type != typ {
				t.Fatalf("event %d: type %s, want %s", i, ev.Type, typ)
			}
			if got := ev.Object.(*corev1.ConfigMap).Name; got != "smoke" {
				t.Fatalf("event %d: name %q", i, got)
			}
		case <-ctx.Done():
			t.Fatalf("event %d (%s) not received", i, typ)
		}
	}
}

func TestWatchExpiresAfterCompactionAndRestart(t *testing.T) {
	cp := cluster.StartT(t, cluster.Options{DisableWatchCache: true})
	cs := cp.APIServer().Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cms := cs.CoreV1().ConfigMaps("default")

	first, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "old"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		first.Data = map[string]string{"i": string(rune('a' + i))}
		if first, err = cms.Update(ctx, first, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cp.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
	if err == nil {
		ev := <-w.ResultChan()
		w.Stop()
		if ev.Type != watch.Error {
			t.Fatalf("watch from a compacted revision: got %s, want an error", ev.Type)
		}
		err = apierrors.FromObject(ev.Object)
	}
	if !apierrors.IsGone(err) && !apierrors.IsResourceExpired(err) {
		t.Fatalf("watch from a compacted revision: %v, want 410 Gone", err)
	}

	if err := cp.RestartAPIServer(); err != nil {
		t.Fatal(err)
	}
	got, err := cms.Get(ctx, "old", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got.ResourceVersion != first.ResourceVersion {
		t.Errorf("after restart: resourceVersion %s, want %s", got.ResourceVersion, first.ResourceVersion)
	}
}

func TestTwoAPIServersShareEtcd(t *testing.T) {
	cp := cluster.StartT(t, cluster.Options{})
	second, err := cp.AddAPIServer()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cp.APIServer().Kill()
	if _, err := second.Clientset().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "while-down"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cp.APIServer().Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.APIServer().Clientset().CoreV1().Namespaces().Get(ctx, "while-down", metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace made through the second API server: %v", err)
	}
}

func TestFeatureGatesBadInputFailsStart(t *testing.T) {
	cp, err := cluster.Start(cluster.Options{Dir: t.TempDir(), FeatureGates: "NoSuchGate=true"})
	if err == nil {
		cp.Stop()
		t.Fatal("a control plane started with an unknown feature gate")
	}
	// The API server's own complaint, from its log tail.
	if msg := err.Error(); !strings.Contains(msg, "kube-apiserver-0 exited") || !strings.Contains(msg, "NoSuchGate") {
		t.Fatalf("error does not carry the API server's log: %v", err)
	}
}

// TestShardedListAndWatch checks the API server's alpha ShardedListAndWatch
// (KEP-5866) that sharding the feed over replicas (issue 23) relies on, and
// shard.Hash/Range/Selector against it: with the gate on, a LIST or WATCH
// with a shard selector returns exactly the objects whose uid hashes into the
// range (from the watch cache and from etcd alike), and a list echoes the
// selector in metadata.shardInfo; without the gate the selector is ignored.
func TestShardedListAndWatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    cluster.Options
		applied bool
	}{
		{"gate on", cluster.Options{FeatureGates: "ShardedListAndWatch=true"}, true},
		{"gate on, watch cache off", cluster.Options{FeatureGates: "ShardedListAndWatch=true", DisableWatchCache: true}, true},
		{"gate off", cluster.Options{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := cluster.StartT(t, tc.opts)
			testShardedListAndWatch(t, cp.APIServer().Clientset(), tc.applied)
		})
	}
}

func testShardedListAndWatch(t *testing.T, cs *kubernetes.Clientset, applied bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "shard"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cms := cs.CoreV1().ConfigMaps(ns)
	start, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Shard 0 of 2: the lower half of the hash space.
	lo, hi := shard.Range(0, 2)
	sel := shard.Selector(lo, hi)
	if want := "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')"; sel != want {
		t.Fatalf("selector %q, want %q", sel, want)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: start.ResourceVersion, ShardSelector: sel})
	if err != nil {
		t.Fatalf("watch with a shard selector: %v", err)
	}
	defer w.Stop()

	// 40 ConfigMaps, then more until the last one made is in shard 0: its
	// event ends the wait, and every event of an earlier change (in
	// resourceVersion order) has come by then if it was sent at all.
	all := map[string]string{}  // uid -> name
	want := map[string]string{} // the shard-0 part of all
	var order []string
	for i := 0; i < 40 || !shard.Contains(shard.Hash(order[len(order)-1]), lo, hi); i++ {
		cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%02d", i)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uid := string(cm.UID)
		all[uid] = cm.Name
		order = append(order, uid)
		if shard.Contains(shard.Hash(uid), lo, hi) {
			want[uid] = cm.Name
		}
	}
	last := order[len(order)-1]
	if len(want) == 0 || len(want) == len(all) {
		t.Fatalf("%d of %d uids in shard 0: the test needs both halves", len(want), len(all))
	}
	t.Logf("%d ConfigMaps, %d in %s", len(all), len(want), sel)
	expect := want
	if !applied {
		expect = all
	}

	// LIST, typed: both halves, and without a selector.
	for i := 0; i < 2; i++ {
		ilo, ihi := shard.Range(i, 2)
		isel := shard.Selector(ilo, ihi)
		list, err := cms.List(ctx, metav1.ListOptions{ShardSelector: isel})
		if err != nil {
			t.Fatalf("list %s: %v", isel, err)
		}
		wantList := all
		if applied {
			wantList = map[string]string{}
			for uid, name := range all {
				if shard.Contains(shard.Hash(uid), ilo, ihi) {
					wantList[uid] = name
				}
			}
		}
		checkUIDs(t, "list "+isel, listUIDs(list), wantList)
		switch {
		case applied && list.ShardInfo == nil:
			t.Errorf("list %s: no shardInfo", isel)
		case applied && list.ShardInfo.Selector != isel:
			t.Errorf("list %s: shardInfo.selector %q", isel, list.ShardInfo.Selector)
		case !applied && list.ShardInfo != nil:
			t.Errorf("list %s without the gate: shardInfo %+v", isel, list.ShardInfo)
		}
	}
	if list, err := cms.List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	} else if checkUIDs(t, "list without a selector", listUIDs(list), all); list.ShardInfo != nil {
		t.Errorf("list without a selector: shardInfo %+v", list.ShardInfo)
	}

	// LIST, raw: the wire names, query parameter shardSelector and
	// metadata.shardInfo.selector in the response.
	body, err := cs.CoreV1().RESTClient().Get().Namespace(ns).Resource("configmaps").
		Param("shardSelector", sel).SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		t.Fatalf("raw list: %v", err)
	}
	var raw struct {
		Metadata struct {
			ShardInfo *struct {
				Selector string `json:"selector"`
			} `json:"shardInfo"`
		} `json:"metadata"`
		Items []struct {
			Metadata struct {
				UID string `json:"uid"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	rawUIDs := map[string]bool{}
	for _, it := range raw.Items {
		rawUIDs[it.Metadata.UID] = true
	}
	checkUIDs(t, "raw list", rawUIDs, expect)
	if si := raw.Metadata.ShardInfo; applied && (si == nil || si.Selector != sel) || !applied && si != nil {
		t.Errorf("raw list: metadata.shardInfo %+v (applied %v)", si, applied)
	}

	// The short bound of the field's own documentation example ('0x0') is
	// rejected by the parser, which wants 16 digits; without the gate it is
	// never parsed.
	bad := "shardRange(object.metadata.uid, '0x0', '0x8000000000000000')"
	list, err := cms.List(ctx, metav1.ListOptions{ShardSelector: bad})
	switch {
	case applied && err == nil:
		t.Errorf("list %s: no error, %d items", bad, len(list.Items))
	case applied:
		code := statusCode(err)
		t.Logf("list %s: status %d, reason %q: %v", bad, code, apierrors.ReasonForError(err), err)
		if code < 400 {
			t.Errorf("list %s: status %d", bad, code)
		}
	case err != nil:
		t.Errorf("list %s without the gate: %v", bad, err)
	default:
		checkUIDs(t, "list "+bad+" without the gate", listUIDs(list), all)
	}

	// WATCH: ADDED only for shard 0, then DELETED only for shard 0, the last
	// change being in shard 0 each time.
	got := watchUntil(ctx, t, w, watch.Added, last)
	checkUIDs(t, "watch ADDED", got, expect)
	for _, uid := range order {
		if err := cms.Delete(ctx, all[uid], metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got = watchUntil(ctx, t, w, watch.Deleted, last)
	checkUIDs(t, "watch DELETED", got, expect)
}

func listUIDs(list *corev1.ConfigMapList) map[string]bool {
	out := map[string]bool{}
	for _, cm := range list.Items {
		out[string(cm.UID)] = true
	}
	return out
}

// watchUntil returns the uids of the typ events up to the one of uid, and
// fails on any other event type.
func watchUntil(ctx context.Context, t *testing.T, w watch.Interface, typ watch.EventType, uid string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed waiting for %s of %s", typ, uid)
			}
			cm, isCM := ev.Object.(*corev1.ConfigMap)
			if ev.Type != typ || !isCM {
				t.Fatalf("watch: %s %T while waiting for %s events", ev.Type, ev.Object, typ)
			}
			got[string(cm.UID)] = true
			if string(cm.UID) == uid {
				return got
			}
		case <-ctx.Done():
			t.Fatalf("watch: no %s of %s", typ, uid)
		}
	}
}

func checkUIDs(t *testing.T, what string, got map[string]bool, want map[string]string) {
	t.Helper()
	var missing, extra []string
	for uid, name := range want {
		if !got[uid] {
			missing = append(missing, name)
		}
	}
	for uid := range got {
		if _, ok := want[uid]; !ok {
			extra = append(extra, fmt.Sprintf("%s (hash %#016x)", uid, shard.Hash(uid)))
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		slices.Sort(missing)
		t.Errorf("%s: %d items, want %d; missing %v, unexpected %v", what, len(got), len(want), missing, extra)
	}
}

func statusCode(err error) int32 {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return s.Status().Code
	}
	return 0
}
