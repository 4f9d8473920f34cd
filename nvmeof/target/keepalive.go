package target

import (
	"sync"
	"time"
)

// keepAlive is a controller's Keep Alive timer (NVMe Base 2.0, 3.9): if no
// Keep Alive command arrives within KATO, the host is presumed gone and
// expire runs (once). A KATO of zero disables it.
type keepAlive struct {
	mu      sync.Mutex
	timeout time.Duration
	timer   *time.Timer
	expired bool
	expire  func()
}

func newKeepAlive(timeout time.Duration, expire func()) *keepAlive {
	k := &keepAlive{timeout: timeout, expire: expire}
	// Under the lock: a timer that fires before it is stored waits for it.
	k.mu.Lock()
	defer k.mu.Unlock()
	if timeout > 0 {
		k.timer = time.AfterFunc(timeout, k.fire)
	}
	return k
}

func (k *keepAlive) fire() {
	k.mu.Lock()
	if k.expired || k.timer == nil {
		k.mu.Unlock()
		return
	}
	k.expired = true
	k.mu.Unlock()
	k.expire()
}

// reset restarts the countdown; false if the timer already expired.
func (k *keepAlive) reset() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.expired {
		return false
	}
	if k.timer != nil {
		k.timer.Reset(k.timeout)
	}
	return true
}

// setTimeout changes KATO (Set Features Keep Alive Timer).
func (k *keepAlive) setTimeout(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.expired {
		return
	}
	k.timeout = d
	switch {
	case d == 0 && k.timer != nil:
		k.timer.Stop()
		k.timer = nil
	case d > 0 && k.timer == nil:
		k.timer = time.AfterFunc(d, k.fire)
	case d > 0:
		k.timer.Reset(d)
	}
}

func (k *keepAlive) current() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.timeout
}

// stop disarms the timer for good.
func (k *keepAlive) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expired = true
	if k.timer != nil {
		k.timer.Stop()
	}
}
