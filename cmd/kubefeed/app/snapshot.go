package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kubefeed/kubefeed/exporter"
)

// A snapshot request is a ConfigMap in the snapshots namespace, labelled
// kubefeed.io/snapshot with its phase, so that it works with RBAC and
// leader election and needs no port: `kubefeed snapshot` creates it, the
// leader runs it and writes the outcome back, and `kubectl get configmaps
// -l kubefeed.io/snapshot -L kubefeed.io/snapshot` shows them all.
const (
	snapshotLabel  = "kubefeed.io/snapshot"
	snapshotPrefix = "kubefeed-snapshot-"

	phasePending   = "pending"
	phaseRunning   = "running"
	phaseCompleted = "completed"
	phaseFailed    = "failed"

	// Keys of the request (set by `kubefeed snapshot`) and of its outcome
	// (set by kubefeed).
	keyResource    = "resource"
	keyNamespace   = "namespace"
	keySink        = "sink"
	keyID          = "id"
	keyStartedAt   = "startedAt"
	keyCompletedAt = "completedAt"
	keyCount       = "count"
	keyResult      = "result"
	keyMessage     = "message"
)

// snapshotRequest is a request read from its ConfigMap.
type snapshotRequest struct {
	cm  *corev1.ConfigMap
	req exporter.SnapshotRequest
	bad string // why the request cannot run ("" when it can)
}

func readSnapshotRequest(cm *corev1.ConfigMap) snapshotRequest {
	r := snapshotRequest{cm: cm, req: exporter.SnapshotRequest{
		ID: string(cm.UID), Resource: strings.TrimSpace(cm.Data[keyResource]),
		Namespace: strings.TrimSpace(cm.Data[keyNamespace]), Sink: strings.TrimSpace(cm.Data[keySink]),
	}}
	if at := cm.Data[keyStartedAt]; at != "" {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			r.bad = fmt.Sprintf("data.%s %q: %v", keyStartedAt, at, err)
		}
		r.req.Time = t
	}
	if ns := r.req.Namespace; ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			r.bad = fmt.Sprintf("data.%s: bad namespace %q: %s", keyNamespace, ns, strings.Join(errs, "; "))
		}
	}
	var unknown []string
	for k := range cm.Data {
		if !knownSnapshotKeys[k] {
			unknown = append(unknown, "data."+k)
		}
	}
	if len(unknown) > 0 {
		// A typo would otherwise snapshot everything on every sink.
		sort.Strings(unknown)
		r.bad = fmt.Sprintf("unknown key %s (a request knows %s, %s and %s)", strings.Join(unknown, ", "), keyResource, keyNamespace, keySink)
	}
	return r
}

// knownSnapshotKeys are the data keys of a request and its outcome.
var knownSnapshotKeys = map[string]bool{keyResource: true, keyNamespace: true, keySink: true, keyID: true, keyStartedAt: true,
	keyCompletedAt: true, keyCount: true, keyResult: true, keyMessage: true}

// snapshotRequests runs the snapshot requests of namespace ns, oldest
// first and one at a time, on the exporter leading (current; nil or a
// standby: not this replica's turn). It returns when ctx ends.
func snapshotRequests(ctx context.Context, cs kubernetes.Interface, ns string, current func() *exporter.Exporter, log *zap.Logger) {
	log = log.Named("snapshots")
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = snapshotLabel }))
	inf := f.Core().V1().ConfigMaps()
	wake := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	// A request deleted while it runs is withdrawn: its run is cancelled,
	// so that it does not hold its sinks' one snapshot at a time.
	var (
		runningMu  sync.Mutex
		runningUID types.UID
		withdraw   context.CancelFunc
	)
	deleted := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return
		}
		runningMu.Lock()
		if cm.UID == runningUID && withdraw != nil {
			withdraw()
		}
		runningMu.Unlock()
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }, DeleteFunc: deleted})
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	// passOver are requests (by uid) to pass over: those this loop ran
	// to their outcome (the informer may show them running a moment
	// longer, and they must not run twice), and those the API server
	// refuses to update for good (an immutable ConfigMap), which would
	// otherwise hold back every request behind them.
	passOver := map[types.UID]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
		ex := current()
		if ex == nil || ex.Standby() {
			continue
		}
		cms, err := inf.Lister().ConfigMaps(ns).List(labels.Everything())
		if err != nil {
			continue
		}
		next := oldestOpen(cms, passOver)
		if next == nil {
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		runningMu.Lock()
		runningUID, withdraw = next.UID, cancel
		runningMu.Unlock()
		var finished bool
		finished, err = runSnapshotRequest(rctx, cs, readSnapshotRequest(next.DeepCopy()), ex, current, log)
		if finished {
			// The informer may show it running a moment longer: it must
			// not run again.
			passOver[next.UID] = true
		}
		runningMu.Lock()
		runningUID, withdraw = "", nil
		runningMu.Unlock()
		cancel()
		if refusedForGood(err) {
			log.Error("snapshot request cannot be updated; passed over", zap.String("request", next.Name), zap.Error(err))
			passOver[next.UID] = true
		}
	}
}

// refusedForGood reports whether an update of a request failed for a
// reason of the request's own that trying again does not cure (not
// Forbidden: that is kubefeed's RBAC, and holds for every request).
func refusedForGood(err error) bool {
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err)
}

// oldestOpen is the oldest request still pending or running, skip aside.
func oldestOpen(cms []*corev1.ConfigMap, skip map[types.UID]bool) *corev1.ConfigMap {
	var open []*corev1.ConfigMap
	for _, cm := range cms {
		if skip[cm.UID] {
			continue
		}
		if p := cm.Labels[snapshotLabel]; p == phasePending || p == phaseRunning || p == "" {
			open = append(open, cm)
		}
	}
	sort.Slice(open, func(i, j int) bool {
		a, b := open[i].CreationTimestamp, open[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return open[i].Name < open[j].Name
	})
	if len(open) == 0 {
		return nil
	}
	return open[0]
}

// runSnapshotRequest marks r running, runs it on ex and writes its
// outcome. A run cut short because ex stopped leading (current changes)
// or kubefeed stops is left running: the next leader runs it again, with
// the same id and time, so the events it sent again are duplicates by id.
// It returns the error of an update of the request that failed.
func runSnapshotRequest(ctx context.Context, cs kubernetes.Interface, r snapshotRequest, ex *exporter.Exporter, current func() *exporter.Exporter, log *zap.Logger) (bool, error) {
	cms := cs.CoreV1().ConfigMaps(r.cm.Namespace)
	log = log.With(zap.String("request", r.cm.Name), zap.String("snapshot", r.req.ID))
	if r.bad != "" {
		return outcomeWritten(finishSnapshotRequest(ctx, cms, r.cm, phaseFailed, map[string]string{keyMessage: r.bad}, log))
	}
	if r.req.Time.IsZero() {
		r.req.Time = time.Now().UTC()
	}
	cm := r.cm.DeepCopy()
	if cm.Labels[snapshotLabel] != phaseRunning || cm.Data[keyStartedAt] == "" {
		setSnapshotLabel(cm, phaseRunning)
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[keyID] = r.req.ID
		cm.Data[keyStartedAt] = r.req.Time.Format(time.RFC3339Nano)
		updated, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kubefeed"})
		if err != nil {
			log.Warn("snapshot request not marked running; trying again", zap.Error(err))
			return false, err
		}
		cm = updated
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // ex stopped leading: the run ends, left for the next leader
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				if current() != ex {
					cancel()
					return
				}
			}
		}
	}()
	log.Info("snapshot requested", zap.String("resource", r.req.Resource), zap.String("namespace", r.req.Namespace), zap.String("sink", r.req.Sink))
	res, err := ex.Snapshot(sctx, r.req)
	if sctx.Err() != nil || errors.Is(err, exporter.ErrStopped) {
		log.Info("snapshot cut short (withdrawn, no longer leading, or stopping); unless withdrawn, the next leader runs it again")
		return false, nil
	}
	if err != nil {
		return outcomeWritten(finishSnapshotRequest(ctx, cms, cm, phaseFailed, map[string]string{keyMessage: err.Error()}, log))
	}
	total := 0
	var parts []string
	for _, sr := range res {
		total += sr.Count
		parts = append(parts, fmt.Sprintf("%s: %d (%s)", sr.Sink, sr.Count, strings.Join(sr.Resources, ", ")))
	}
	return outcomeWritten(finishSnapshotRequest(ctx, cms, cm, phaseCompleted, map[string]string{
		keyCount: strconv.Itoa(total), keyResult: strings.Join(parts, "; "), keyCompletedAt: time.Now().UTC().Format(time.RFC3339Nano),
	}, log))
}

// outcomeWritten is the outcome of finishSnapshotRequest as runSnapshotRequest
// returns it: finished when the outcome was written (or the request
// withdrawn).
func outcomeWritten(err error) (bool, error) { return err == nil, err }

// configMapClient is what runSnapshotRequest needs of the ConfigMaps API.
type configMapClient interface {
	Get(ctx context.Context, name string, o metav1.GetOptions) (*corev1.ConfigMap, error)
	Update(ctx context.Context, cm *corev1.ConfigMap, o metav1.UpdateOptions) (*corev1.ConfigMap, error)
}

// finishSnapshotRequest writes a request's outcome, retrying a conflict
// on the newest version (a user may have labelled it meanwhile). It
// returns the last error when the outcome was not written (nil too when
// the request was withdrawn).
func finishSnapshotRequest(ctx context.Context, cms configMapClient, cm *corev1.ConfigMap, phase string, data map[string]string, log *zap.Logger) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		c := cm.DeepCopy()
		setSnapshotLabel(c, phase)
		if c.Data == nil {
			c.Data = map[string]string{}
		}
		for k, v := range data {
			c.Data[k] = v
		}
		_, err = cms.Update(ctx, c, metav1.UpdateOptions{FieldManager: "kubefeed"})
		if err == nil {
			log.Info("snapshot "+phase, zap.Any("outcome", data))
			return nil
		}
		if apierrors.IsNotFound(err) {
			return nil // the request was withdrawn
		}
		if refusedForGood(err) {
			log.Error("snapshot outcome refused", zap.String("phase", phase), zap.Error(err))
			return err
		}
		if !apierrors.IsConflict(err) {
			log.Warn("snapshot outcome not written", zap.Error(err))
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Second):
			}
		}
		if fresh, gerr := cms.Get(ctx, cm.Name, metav1.GetOptions{}); gerr == nil {
			cm = fresh
		}
	}
	log.Error("snapshot outcome not written after 5 attempts", zap.String("phase", phase))
	return err
}

func setSnapshotLabel(cm *corev1.ConfigMap, phase string) {
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[snapshotLabel] = phase
}

func newSnapshotCmd(g *globalFlags, stdout io.Writer) *cobra.Command {
	var scope, sink, namespace, cfgPath string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "snapshot [--scope RESOURCE[/NAMESPACE]] [--sink NAME]",
		Short: "Ask the running kubefeed for a snapshot of what it watches, sent into its feed",
		Long: `Creates a snapshot request (a ConfigMap labelled kubefeed.io/snapshot in the
namespace of the config's snapshots block) that the running kubefeed, its
leader with leader election, picks up. The feed then carries, per resource,
io.kubefeed.snapshot.started, one io.kubefeed.resource.snapshot event per
object, and io.kubefeed.snapshot.completed with the count. One snapshot runs
at a time. See them with:
  kubectl get configmaps -n NAMESPACE -l kubefeed.io/snapshot -L kubefeed.io/snapshot`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resource, ns, _ := strings.Cut(scope, "/")
			if scope != "" && (resource == "" || strings.Contains(ns, "/")) {
				return usageErr(fmt.Errorf("--scope %q: want RESOURCE or RESOURCE/NAMESPACE", scope))
			}
			if ns != "" {
				if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
					return usageErr(fmt.Errorf("--scope %q: bad namespace %q: %s", scope, ns, strings.Join(errs, "; ")))
				}
			}
			rc, ctxNS, err := clientConfig(g)
			if err != nil {
				return usageErr(err)
			}
			if namespace == "" && cfgPath != "" {
				cfg, err := loadConfig(cfgPath)
				if err != nil {
					return err
				}
				if cfg.Snapshots == nil {
					return usageErr(fmt.Errorf("%s: no snapshots block: the kubefeed it configures takes no snapshot requests", cfgPath))
				}
				namespace = cfg.Snapshots.Namespace
			}
			if namespace == "" {
				namespace = ctxNS
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return runtimeErr(err)
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			cm := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{GenerateName: snapshotPrefix, Namespace: namespace, Labels: map[string]string{snapshotLabel: phasePending}},
				Data:       map[string]string{keyResource: resource, keyNamespace: ns, keySink: sink},
			}
			made, err := cs.CoreV1().ConfigMaps(namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: "kubefeed-snapshot"})
			if err != nil {
				return runtimeErr(fmt.Errorf("create the snapshot request in namespace %s: %w", namespace, err))
			}
			fmt.Fprintf(stdout, "configmap/%s created in namespace %s\n", made.Name, namespace)
			if !wait {
				return nil
			}
			done, err := waitSnapshotRequest(ctx, cs, made)
			if err != nil {
				return runtimeErr(fmt.Errorf("configmap/%s: %w", made.Name, err))
			}
			if done.Labels[snapshotLabel] == phaseFailed {
				return runtimeErr(fmt.Errorf("configmap/%s: snapshot failed: %s", made.Name, done.Data[keyMessage]))
			}
			fmt.Fprintf(stdout, "snapshot %s completed: %s events (%s)\n", done.Data[keyID], done.Data[keyCount], done.Data[keyResult])
			return nil
		},
	}
	cmd.Flags().StringVar(&scope, "scope", "", "RESOURCE or RESOURCE/NAMESPACE to snapshot (default: everything watched)")
	cmd.Flags().StringVar(&sink, "sink", "", "the sink to send the snapshot to (default: every sink)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace of the snapshot requests (default: --config's snapshots.namespace, else the kubeconfig context's)")
	cmd.Flags().StringVar(&cfgPath, "config", "", "kubefeed's config file, for its snapshots.namespace")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the snapshot completed or failed")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait (0: no limit)")
	return cmd
}

// waitSnapshotRequest watches the request until it completed or failed.
func waitSnapshotRequest(ctx context.Context, cs kubernetes.Interface, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	cms := cs.CoreV1().ConfigMaps(cm.Namespace)
	sel := fields.OneTermEqualSelector("metadata.name", cm.Name).String()
	rv := cm.ResourceVersion
watching:
	for {
		w, err := cms.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: rv})
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("not completed in time (is kubefeed running, with snapshots.namespace %s?)", cm.Namespace)
			}
			cur, gerr := cms.Get(ctx, cm.Name, metav1.GetOptions{})
			if gerr != nil {
				return nil, gerr
			}
			if p := cur.Labels[snapshotLabel]; p == phaseCompleted || p == phaseFailed {
				return cur, nil
			}
			rv = cur.ResourceVersion
			continue
		}
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Error:
				// Expired (410) or another failure: read the request
				// again and watch from its current version.
				w.Stop()
				cur, gerr := cms.Get(ctx, cm.Name, metav1.GetOptions{})
				switch {
				case apierrors.IsNotFound(gerr):
					return nil, errors.New("the request was deleted")
				case gerr != nil:
					if ctx.Err() != nil {
						return nil, fmt.Errorf("not completed in time (is kubefeed running, with snapshots.namespace %s?)", cm.Namespace)
					}
					return nil, gerr
				}
				if p := cur.Labels[snapshotLabel]; p == phaseCompleted || p == phaseFailed {
					return cur, nil
				}
				rv = cur.ResourceVersion
				continue watching
			case watch.Deleted:
				w.Stop()
				return nil, errors.New("the request was deleted")
			case watch.Added, watch.Modified:
				cur, ok := ev.Object.(*corev1.ConfigMap)
				if !ok {
					continue
				}
				rv = cur.ResourceVersion
				if p := cur.Labels[snapshotLabel]; p == phaseCompleted || p == phaseFailed {
					w.Stop()
					return cur, nil
				}
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("not completed in time (is kubefeed running, with snapshots.namespace %s?)", cm.Namespace)
		}
	}
}
