package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/kubefeed/kubefeed/exporter/wirejson"
)

// watchClient opens watches itself and decodes each event in one pass.
//
// The dynamic client's watch reads every event five to six times: the
// frame reader scans it, the WatchEvent envelope is scanned for its kind
// and decoded (the object copied out as raw bytes and validated), and the
// object is scanned for its kind and finally parsed into a map. On a burst
// of Kubernetes Events that was 60 % of kubefeed's CPU. Here each event is
// read once, by package wirejson, straight into the map the informer
// caches, with the same values (integers as int64, as sigs.k8s.io/json
// and the dynamic client give them), the same errors for bad event types,
// missing kinds and ERROR events (an unstructured Status, which
// apierrors.FromObject reads), and the same request.
type watchClient struct {
	rest rest.Interface
	// dropManagedFields skips object.metadata.managedFields while parsing
	// each event: the scopes' transform drops them anyway, and on
	// Kubernetes Events they are a third of the bytes.
	dropManagedFields bool
}

var (
	watchParamScheme = runtime.NewScheme()
	watchParamCodec  = runtime.NewParameterCodec(watchParamScheme)
	watchParamGV     = schema.GroupVersion{Version: "v1"}
)

func init() { metav1.AddToGroupVersion(watchParamScheme, watchParamGV) }

// newWatchClient builds a REST client for watches from the config the
// dynamic client was built from.
func newWatchClient(cfg *rest.Config) (*watchClient, error) {
	c := rest.CopyConfig(cfg)
	c.APIPath = "/"
	c.GroupVersion = &watchParamGV
	c.AcceptContentTypes = "application/json"
	c.ContentType = "application/json"
	c.NegotiatedSerializer = serializer.NewCodecFactory(watchParamScheme).WithoutConversion()
	// Watches are read uncompressed (here, and by asking for identity on
	// each request: over plain HTTP client-go uses Go's default transport,
	// which ignores DisableCompression). The API server compresses a
	// watch-list stream (WatchListCompression) for its whole life, ending
	// a deflate block at every event it flushes after the initial ones, so
	// each live event cost a Huffman table on both sides: about a tenth of
	// kubefeed's CPU on a stream of core Events. The price is the initial
	// list's bytes on the wire, which in-cluster is cheap; kubectl's
	// --disable-compression makes the same trade.
	c.DisableCompression = true
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("watch client: %w", err)
	}
	return &watchClient{rest: rc, dropManagedFields: true}, nil
}

// collectionPath is the URL path of gvr's objects in namespace ("" for all
// or cluster-scoped).
func collectionPath(gvr schema.GroupVersionResource, namespace string) string {
	p := "/apis/" + gvr.Group + "/" + gvr.Version
	if gvr.Group == "" {
		p = "/api/" + gvr.Version
	}
	if namespace != "" {
		p += "/namespaces/" + namespace
	}
	return p + "/" + gvr.Resource
}

// watch opens a watch of gvr in namespace, as the dynamic client does.
// keepManagers keeps managedFields (a scope whose rules ask attribution).
func (w *watchClient) watch(ctx context.Context, gvr schema.GroupVersionResource, namespace string, opts metav1.ListOptions, keepManagers bool) (watch.Interface, error) {
	opts.Watch = true
	body, err := w.rest.Get().AbsPath(collectionPath(gvr, namespace)).
		SetHeader("Accept-Encoding", "identity").
		SpecificallyVersionedParams(&opts, watchParamCodec, watchParamGV).
		Stream(ctx)
	if err != nil {
		return nil, err
	}
	d := newEventDecoder(body, wirejson.Options{DropManagedFields: w.dropManagedFields && !keepManagers, ManagedFieldsRaw: keepManagers})
	return watch.NewStreamWatcher(d,
		apierrors.NewClientErrorReporter(http.StatusInternalServerError, "GET", "ClientWatchDecoding")), nil
}

// eventDecoder reads watch events from a JSON stream.
type eventDecoder struct {
	body io.ReadCloser
	dec  *wirejson.Decoder
}

func newEventDecoder(body io.ReadCloser, opts wirejson.Options) *eventDecoder {
	return &eventDecoder{body: body, dec: wirejson.NewDecoder(body, opts)}
}

// Decode returns the next event; io.EOF when the stream ends. The end of
// the stream and read errors are returned as they are: the stream watcher
// tells a clean end, a cut-off event and a network failure apart by them.
func (d *eventDecoder) Decode() (watch.EventType, runtime.Object, error) {
	var ev wirejson.Event
	if err := d.dec.Decode(&ev); err != nil {
		var se *wirejson.SyntaxError
		var ve *wirejson.ValueError
		if errors.As(err, &se) || errors.As(err, &ve) || errors.Is(err, wirejson.ErrEventTooLarge) {
			return "", nil, fmt.Errorf("unable to decode watch event: %w", err)
		}
		return "", nil, err
	}
	switch t := watch.EventType(ev.Type); t {
	case watch.Added, watch.Modified, watch.Deleted, watch.Error, watch.Bookmark:
	default:
		return "", nil, fmt.Errorf("got invalid watch event type: %v", ev.Type)
	}
	if ev.Object == nil {
		return "", nil, fmt.Errorf("unable to decode watch event: no object")
	}
	u := &unstructured.Unstructured{Object: ev.Object}
	if u.GetKind() == "" {
		return "", nil, runtime.NewMissingKindErr(string(d.dec.Raw()))
	}
	return watch.EventType(ev.Type), u, nil
}

// Close ends the stream.
func (d *eventDecoder) Close() { _ = d.body.Close() }

// fastWatchClient lists through the dynamic client and watches through
// the watch client.
type fastWatchClient struct {
	resourceClient
	w         *watchClient
	gvr       schema.GroupVersionResource
	namespace string
	// keep is the scope's keepManagers, set once the scope is made.
	keep *atomic.Bool
}

func (c *fastWatchClient) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return c.w.watch(ctx, c.gvr, c.namespace, opts, c.keep != nil && c.keep.Load())
}
