// The same vulnerable golang.org/x/text v0.3.7, but only language.Make,
// which no vulnerability names: imported, not reachable.
module example.com/unreachable

go 1.26

require golang.org/x/text v0.3.7
