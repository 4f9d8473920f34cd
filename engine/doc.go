// Package engine is Strata's control plane: pools (devices to carve),
// volumes (contiguous windows of a pool, see bdev/part), shares (a volume
// exported as an NVMe-oF subsystem through an Exporter) and hosts (named
// host NQNs).
//
// Persistence: the configuration lives in state.json in the data directory
// (format in state.go), replaced atomically (internal/atomicfile). Every
// mutation builds the next state on a copy, writes it, and only then makes
// it current and answers: an acknowledged change survives a crash, an
// unacknowledged one may or may not. At start the engine rebuilds every
// object from the file. A corrupt file or one from a newer version stops
// the engine with an error naming the file; nothing is ever reset silently.
// A pool whose device cannot be opened stays in the state, reported
// faulted with the reason, as do its volumes and their shares.
//
// Space: each pool keeps its free extents in the state; a volume takes the
// first free extent large enough (engine/extent) and grows only in place.
// New space is unmapped before a volume gets it, so it reads back zeroes.
//
// Concurrency: methods are safe from any goroutine. One mutex serializes
// them (control-plane calls are rare and short, apart from clearing a new
// volume's space); nothing here is on the I/O path, which runs on the
// reactors through the devices' channels. Errors carry a kind (ErrInvalid,
// ErrNotFound, ErrConflict, ...) for errors.Is; their text is for people.
package engine
