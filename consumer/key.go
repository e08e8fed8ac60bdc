package consumer

// Key names one object: its resource and group (as the API names them:
// "deployments" and "apps"; "" for the core group), namespace ("" for
// cluster-scoped objects) and name.
type Key struct {
	Group     string `json:"group,omitempty"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String is resource[.group]/[namespace/]name, as kubectl would name it.
func (k Key) String() string {
	r := k.Resource
	if k.Group != "" {
		r += "." + k.Group
	}
	if k.Namespace != "" {
		return r + "/" + k.Namespace + "/" + k.Name
	}
	return r + "/" + k.Name
}
