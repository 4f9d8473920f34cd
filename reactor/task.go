package reactor

// Task is work handed to a reactor. Run is called on the reactor's thread.
// Implement it with a pointer type: storing a pointer in the interface
// allocates nothing.
type Task interface {
	Run(r *Reactor)
}

// Completer receives the result of an io_uring operation prepared with
// Reactor.Prep: res is the CQE's result (bytes, or -errno), flags its flags.
// Complete is called on the reactor's thread.
type Completer interface {
	Complete(res int32, flags uint32)
}

// Poller is polled once per loop iteration (for devices that complete I/O
// by polling). Poll returns how much work it did; Busy reports whether it
// still expects completions, which keeps the reactor from sleeping.
type Poller interface {
	Poll() int
	Busy() bool
}

// A Napper is a Poller that must prepare a wake-up before the reactor
// sleeps: a socket polled with system calls while the reactor spins arms
// an io_uring receive instead, or its data would not wake the reactor.
// Nap is called on the reactor's thread just before it sleeps.
type Napper interface {
	Poller
	Nap()
}

// TaskFunc adapts a function to Task. It allocates when converted from a
// closure: use it on control paths only, never per I/O.
type TaskFunc func(r *Reactor)

// Run calls f(r).
func (f TaskFunc) Run(r *Reactor) { f(r) }
