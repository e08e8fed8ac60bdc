// A module that calls a vulnerable symbol: golang.org/x/text v0.3.7's
// language.ParseAcceptLanguage (GO-2022-1059, fixed in v0.3.8).
module example.com/reachable

go 1.26

require golang.org/x/text v0.3.7
