package plan

import "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

// Meta is the identifying metadata of an object, read with one lookup
// of its metadata map: each Get* of unstructured looks the map up again,
// and a delivery reads these fields several times (a tenth of the
// pipeline's map lookups on a drain).
type Meta struct {
	Namespace, Name, UID, ResourceVersion string
}

// MetaOf reads u's metadata as the Get* accessors do: a missing or
// non-string field is "".
func MetaOf(u *unstructured.Unstructured) Meta {
	md, _ := u.Object["metadata"].(map[string]any)
	if md == nil {
		return Meta{}
	}
	var m Meta
	m.Namespace, _ = md["namespace"].(string)
	m.Name, _ = md["name"].(string)
	m.UID, _ = md["uid"].(string)
	m.ResourceVersion, _ = md["resourceVersion"].(string)
	return m
}
