package exporter

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// objMeta is the identifying metadata of an object, read with one lookup
// of its metadata map: each Get* of unstructured looks the map up again,
// and a delivery reads these fields several times (a tenth of the
// pipeline's map lookups on a drain).
type objMeta struct {
	namespace, name, uid, resourceVersion string
}

// metaOf reads u's metadata as the Get* accessors do: a missing or
// non-string field is "".
func metaOf(u *unstructured.Unstructured) objMeta {
	md, _ := u.Object["metadata"].(map[string]any)
	if md == nil {
		return objMeta{}
	}
	var m objMeta
	m.namespace, _ = md["namespace"].(string)
	m.name, _ = md["name"].(string)
	m.uid, _ = md["uid"].(string)
	m.resourceVersion, _ = md["resourceVersion"].(string)
	return m
}
