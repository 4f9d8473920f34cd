package pcie

import "time"

// SetAdminTimeout shortens the admin command timeout for a test.
func SetAdminTimeout(d time.Duration) (restore func()) {
	old := adminTimeout
	adminTimeout = d
	return func() { adminTimeout = old }
}
