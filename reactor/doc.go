// Package reactor runs Strata's per-core event loops.
//
// A Reactor is a goroutine locked to an OS thread pinned to one core. It owns
// one io_uring (package uring) and everything reached through it: the I/O
// channels of block devices, their in-flight operations, their buffers. Other
// goroutines never touch that state; they hand the reactor work as Tasks
// through a lock-free MPSC queue (package mpsc) and get answers back the same
// way. Nothing on this path allocates.
//
// Idle policy: when a loop iteration finds nothing to do, the reactor spins
// until Config.Spin has passed since its last work, or Config.SpinIO (1 ms)
// while an operation that completes on its own (Prep: a disk read, a send)
// is in flight, yielding the core on each turn while anything is in
// flight; then it goes to sleep inside io_uring_enter waiting for one
// completion. Operations that wait on a peer (PrepWait: a socket receive)
// do not keep it spinning, so connected but quiet hosts cost no CPU. A
// read on an eventfd is always armed in the ring, so a producer that sees
// the reactor asleep wakes it with one write to the eventfd; any I/O
// completion wakes it too. An idle daemon therefore uses no CPU, unlike
// SPDK's always-polling reactors, at the price of a wake-up on the first
// request after a quiet spell.
//
// Concurrency: Send and the counters are safe from any goroutine; every
// other method must be called on the reactor itself (from a Task, a
// Completer or a Poller).
package reactor
