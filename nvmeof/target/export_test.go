package target

import "time"

// SetSlotWaitLimit shortens how long a reader waits for a free command
// slot; it returns a function that restores the limit.
func SetSlotWaitLimit(d time.Duration) (restore func()) {
	old := slotWaitLimit
	slotWaitLimit = d
	return func() { slotWaitLimit = old }
}

// SlotsPerEntry is the number of command slots per SQ entry.
const SlotsPerEntry = slotsPerEntry
