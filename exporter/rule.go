package exporter

import (
	"fmt"

	"github.com/kubefeed/kubefeed/exporter/config"
	"github.com/kubefeed/kubefeed/exporter/event"
	"github.com/kubefeed/kubefeed/filters"
)

// rule is one compiled watch entry of the config.
type rule struct {
	index       int
	cfg         config.Watch
	events      map[event.Change]bool
	ignore      filters.Patterns
	emitInitial bool
	sinks       []string // names; all sinks when the config lists none
}

func compileRules(cfg *config.Config) ([]*rule, error) {
	all := make([]string, 0, len(cfg.Sinks))
	for _, s := range cfg.Sinks {
		all = append(all, s.Name)
	}
	rules := make([]*rule, 0, len(cfg.Watch))
	for i, w := range cfg.Watch {
		r := &rule{index: i, cfg: w, events: map[event.Change]bool{}, emitInitial: w.InitialList == config.InitialListEmit, sinks: w.Sinks}
		if len(r.sinks) == 0 {
			r.sinks = all
		}
		for _, e := range w.Events {
			switch e {
			case config.EventAdded:
				r.events[event.Added] = true
			case config.EventModified:
				r.events[event.Modified] = true
			case config.EventDeleted:
				r.events[event.Deleted] = true
			}
		}
		ign, err := filters.ParsePatterns(w.IgnorePaths)
		if err != nil {
			return nil, fmt.Errorf("watch[%d].ignorePaths: %w", i, err)
		}
		r.ignore = append(append(filters.Patterns{}, filters.DefaultIgnore...), ign...)
		rules = append(rules, r)
	}
	return rules, nil
}

func (r *rule) routesTo(sink string) bool {
	for _, s := range r.sinks {
		if s == sink {
			return true
		}
	}
	return false
}
