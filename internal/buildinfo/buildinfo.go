// Package buildinfo holds the version stamped into the binary at link time
// (see the Makefile's -ldflags -X).
package buildinfo

// Version is set by the linker; "dev" marks an unstamped build.
var Version = "dev"
