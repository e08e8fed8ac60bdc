package jsonpatch

// Names the external tests use that the package does not export.
var NumberEqual = numberEqual
var Pointer = pointer
