package cluster_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

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
