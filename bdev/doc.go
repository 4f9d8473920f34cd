// Package bdev defines Strata's block devices: one interface for RAM, file,
// NVMe and remote devices and for the layers stacked on them.
//
// A Device is shared by all reactors; I/O goes through a Channel, one per
// device per reactor, opened on and used only from that reactor. Requests
// are caller-owned structs (pool them: nothing on the I/O path allocates);
// a request's Callback runs on the channel's reactor, never from inside
// Submit, so a caller can submit again from a callback without recursion.
//
// Every request is checked here before a backend sees it: a known
// operation, a non-empty in-range LBA span, a buffer of exactly the span's
// size and aligned as the device needs. Failures come back as a Status, a
// typed value the NVMe layer maps to its own status codes.
//
// A channel counts the requests it has in flight. Quiesce holds every new
// request of a device, on all its channels, and returns once the requests
// already submitted have finished: the one primitive a reconfiguration
// (a resize, a snapshot, a change of the layers below) runs under; Resume
// lets the held requests go, in order. Devices tell their consumers what
// happens to them (resized, removed, faulted) through Subscribe, so that
// nothing polls.
//
// Layers stack: a device over others (a window of a pool, a thin store, a
// mirror) passes a request down as child requests from a per-channel
// stock (Children), one or several, to one device or several; the request
// finishes when its children have, with the first error among them. A
// child skips the validation its parent passed, and shares its clock.
//
// Backends live in subpackages (null, malloc, file) and implement Device.
package bdev
