// Package engine is Strata's control plane: pools (devices to carve),
// volumes (of a kind: today contiguous windows of a pool, see bdev/part
// and kind_extent.go), shares (a volume exported as an NVMe-oF subsystem
// through an Exporter) and hosts (named host NQNs).
//
// Persistence: the configuration lives in state.json in the data directory
// (format in state.go), replaced atomically (internal/atomicfile). Every
// mutation builds the next state on a copy, writes it, and only then makes
// it current and answers: an acknowledged change survives a crash, an
// unacknowledged one may or may not. At start the engine rebuilds every
// object from the file. A corrupt file or one from a newer version stops
// the engine with an error naming the file; nothing is ever reset silently.
// A pool whose device cannot be opened stays in the state, reported
// faulted with the reason, as do its volumes and their shares. The state
// file is the desired state, and a reconcile loop (reconcile in engine.go)
// keeps bringing the live objects to it: a faulted pool's device is tried
// again with backoff (from Config.ReconcileInterval to a minute), and once
// it opens its volumes come up, their work resumes and their shares are
// exported; a share the exporter refused is offered again likewise.
//
// Space: each pool keeps its free extents in the state; an extent volume
// takes the first free extent large enough (engine/extent) and grows only
// in place. What differs between kinds of volume sits behind volumeKind
// (kind.go): a new kind is a file and a line in kinds.
//
// Device work: new space is unmapped before hosts see it, so it reads
// back zeroes. A mutation only decides and records: the new volume or size
// goes into the state file with the work it is owed (workRecord), and a
// worker (job.go) does the work outside the mutex, recording progress as
// it goes, then makes the volume whole: the record cleared first, then
// the device opened or grown. CreateVolume and ResizeVolume wait for it,
// or for their context (ErrInterrupted: the work goes on); Open resumes
// recorded work; DeleteVolume and Close stop workers and wait for them.
//
// Concurrency: methods are safe from any goroutine. One mutex (Engine.mu)
// guards the state and is held only for short decisions: never across
// device work, device opens (CreatePool, the reconciler) or exporter calls,
// so reads never wait behind any of them. Share
// mutations are serialized by a second one (shareMu). Nothing here is on
// the I/O path, which runs on the reactors through the devices' channels.
// Errors carry a kind (ErrInvalid, ErrNotFound, ErrConflict, ...) for
// errors.Is; their text is for people.
package engine
