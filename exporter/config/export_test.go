package config

// Names the external tests use that the package does not export.
var IsEventsResource = isEventsResource

const (
	DefaultWorkers      = defaultWorkers
	DefaultResyncPeriod = defaultResyncPeriod
)
