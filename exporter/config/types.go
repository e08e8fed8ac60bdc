package config

// APIVersion and Kind of the config file.
const (
	APIVersion = "kubefeed.io/v1alpha1"
	Kind       = "Config"
)

// Config is the whole file.
type Config struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	// Cluster names this cluster in event sources and subjects.
	Cluster string `yaml:"cluster"`
	// Workers per sink (default 4).
	Workers int `yaml:"workers"`
	// ResyncPeriod of the informers (default 10m); resyncs emit nothing for
	// unchanged objects.
	ResyncPeriod Duration `yaml:"resyncPeriod"`
	// ShutdownTimeout bounds how long SIGTERM waits for queues to drain and
	// sinks to flush (default 30s).
	ShutdownTimeout Duration `yaml:"shutdownTimeout"`
	// WatchTimeout restarts a watch that delivered nothing, not even a
	// bookmark, for this long (default 5m).
	WatchTimeout Duration `yaml:"watchTimeout"`
	// RedactionKeyFile holds the key of redact: hash (HMAC-SHA256).
	RedactionKeyFile string         `yaml:"redactionKeyFile"`
	Watch            []Watch        `yaml:"watch"`
	Sinks            []Sink         `yaml:"sinks"`
	Checkpoint       *Checkpoint    `yaml:"checkpoint"`
	LeaderElection   LeaderElection `yaml:"leaderElection"`
	// Sharding splits the feed over replicas (nil: one leader runs it).
	Sharding *Sharding `yaml:"sharding"`
	Metrics  Metrics   `yaml:"metrics"`
	// Snapshots, when set, lets `kubefeed snapshot` ask the running
	// kubefeed (its leader) for snapshots, through ConfigMaps in a
	// namespace it watches (nil: no snapshots, no such watch).
	Snapshots *Snapshots `yaml:"snapshots"`
}

// Snapshots is where snapshot requests live: ConfigMaps labelled
// kubefeed.io/snapshot in Namespace, each request's outcome written back
// to it.
type Snapshots struct {
	Namespace string `yaml:"namespace"`
}

// Sharding splits the 64-bit FNV-1a hash space of object uids into Shards
// equal ranges, each with its own Lease (leaderElection.name-shard-I) and
// checkpoint; replicas take an even share of them.
type Sharding struct {
	Shards int `yaml:"shards"`
}

// MaxShards bounds sharding.shards: each shard held is a pipeline of its
// own (informers, sinks, a Lease).
const MaxShards = 64

// Event types a rule can select.
const (
	EventAdded    = "ADDED"
	EventModified = "MODIFIED"
	EventDeleted  = "DELETED"
)

// Initial list modes.
const (
	InitialListSkip = "skip"
	InitialListEmit = "emit"
)

// Watch is one rule: a resource, its scope, and where its changes go.
type Watch struct {
	// Resource as kubectl names it: pods, po, deploy, deployments.apps,
	// apps/v1/deployments, widgets.example.com.
	Resource          string   `yaml:"resource"`
	Namespaces        []string `yaml:"namespaces"`
	ExcludeNamespaces []string `yaml:"excludeNamespaces"`
	NamespaceSelector string   `yaml:"namespaceSelector"`
	LabelSelector     string   `yaml:"labelSelector"`
	FieldSelector     string   `yaml:"fieldSelector"`
	Events            []string `yaml:"events"`
	Filter            string   `yaml:"filter"`
	IgnorePaths       []string `yaml:"ignorePaths"`
	RedactPaths       []string `yaml:"redactPaths"`
	// InitialList: skip (default) or emit.
	InitialList string `yaml:"initialList"`
	// OldObject adds data.oldObject to modified events.
	OldObject bool `yaml:"oldObject"`
	// IgnoreStatusOnly drops modifications that touch only /status.
	IgnoreStatusOnly bool `yaml:"ignoreStatusOnly"`
	// Redact: "" (Secrets' values replaced by a marker), "hash" (by a keyed
	// hash, with redactionKeyFile), or "none".
	Redact string `yaml:"redact"`
	// Sinks this rule routes to; empty: every sink.
	Sinks []string `yaml:"sinks"`
	// Expiry (Kubernetes Events only): skip (default) reports nothing when
	// an Event is deleted, which happens when its TTL expires; emit reports
	// it as deleted.
	Expiry string `yaml:"expiry"`
	// Enrich (Kubernetes Events only): involvedObject adds the involved
	// object's labels, annotations and owner references as
	// data.involvedObject, from a metadata-only cache.
	Enrich string `yaml:"enrich"`
	// Attribution: AttributionManagers adds data.changedBy, the field
	// managers (kubectl, helm, controllers) that made a change, read from
	// the object's managedFields; "" (the default) adds nothing.
	Attribution string `yaml:"attribution"`
}

// AttributionManagers is the rule option attribution: managers.
const AttributionManagers = "managers"

// Checkpoint says where delivered state is kept across restarts.
type Checkpoint struct {
	File      *FileCheckpoint      `yaml:"file"`
	JetStream *JetStreamCheckpoint `yaml:"jetstream"`
}

// FileCheckpoint is the embedded file store.
type FileCheckpoint struct {
	Path string `yaml:"path"`
}

// JetStreamCheckpoint is a JetStream key-value bucket, shared by replicas.
type JetStreamCheckpoint struct {
	NATSConnection `yaml:",inline"`
	Bucket         string `yaml:"bucket"`
	// Replicas of the bucket on a JetStream cluster, 1 to 5; 0 (unset): a
	// new bucket gets 1, an existing one keeps its count.
	Replicas int `yaml:"replicas"`
}

// LeaderElection through a coordination.k8s.io Lease.
type LeaderElection struct {
	Enabled   bool   `yaml:"enabled"`
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
	// LeaseDuration, RenewDeadline, RetryPeriod as in client-go
	// (defaults 15s, 10s, 2s).
	LeaseDuration Duration `yaml:"leaseDuration"`
	RenewDeadline Duration `yaml:"renewDeadline"`
	RetryPeriod   Duration `yaml:"retryPeriod"`
	// Standby is how a replica waits for the Lease: StandbyWarm (the
	// default) runs the informers and follows the shared checkpoint, so a
	// failover lists nothing; StandbyCold starts everything on taking it.
	Standby string `yaml:"standby"`
}

// The standby modes of LeaderElection.Standby.
const (
	StandbyWarm = "warm"
	StandbyCold = "cold"
)

// Metrics serves /metrics, /healthz and /readyz.
type Metrics struct {
	Address string `yaml:"address"`
	// Pprof also serves /debug/pprof/ on the same address.
	Pprof bool `yaml:"pprof"`
}
