package state

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Key names one object of one resource: the unit of queueing, ordering and
// delivered state.
type Key struct {
	GVR       schema.GroupVersionResource
	Namespace string
	Name      string
}

// CacheKey is the informer store key (namespace/name or name).
func (k Key) CacheKey() string {
	if k.Namespace == "" {
		return k.Name
	}
	return k.Namespace + "/" + k.Name
}

func (k Key) String() string {
	r := k.GVR.Resource
	if k.GVR.Group != "" {
		r += "." + k.GVR.Group
	}
	return r + "/" + k.CacheKey()
}
