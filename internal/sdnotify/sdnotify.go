// Package sdnotify speaks systemd's notification protocol (sd_notify(3)) in
// pure Go: datagrams such as "READY=1" sent to the Unix socket named by
// $NOTIFY_SOCKET, so the daemon runs as a Type=notify service with a
// watchdog and no C library.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// States the daemon sends.
const (
	Ready     = "READY=1"
	Stopping  = "STOPPING=1"
	Reloading = "RELOADING=1"
	Watchdog  = "WATCHDOG=1"
)

// Notify sends state to the service manager. It reports false, with no
// error, when the process was not started by one ($NOTIFY_SOCKET unset).
func Notify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	if path[0] == '@' { // abstract namespace
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sdnotify: dial %q: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sdnotify: send %q: %w", state, err)
	}
	return true, nil
}

// WatchdogInterval returns how often WATCHDOG=1 must be sent: half the
// timeout systemd gave in $WATCHDOG_USEC (when $WATCHDOG_PID, if set, is this
// process), or false when there is no watchdog.
func WatchdogInterval() (time.Duration, bool) {
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 {
		return 0, false
	}
	return time.Duration(usec) * time.Microsecond / 2, true
}
