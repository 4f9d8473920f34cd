// Package invariants gates expensive self-checks. Built with -tags invariants
// (as make test does), Enabled is true and the checks run; in release builds
// the constant is false and the compiler removes them.
package invariants

// Assert panics with msg when cond is false and invariants are enabled.
// Use it for programmer errors only; operating errors are returned.
func Assert(cond bool, msg string) {
	if Enabled && !cond {
		panic("invariant violated: " + msg)
	}
}
