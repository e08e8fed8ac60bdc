package plan

import (
	"github.com/kubefeed/kubefeed/event"
	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/internal/fixture"
)

var (
	cmRes     = fixture.ConfigMaps
	secretRes = fixture.Secrets
)

func newConfig(watch []config.Watch) *config.Config { return fixture.Config(watch) }

func summary(evs []*event.Event) string { return fixture.Summary(evs) }
