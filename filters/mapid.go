package filters

import "reflect"

// mapID identifies a map by its header pointer, to tell a copied map from
// the original without comparing contents.
func mapID(m map[string]any) uintptr { return reflect.ValueOf(m).Pointer() }
