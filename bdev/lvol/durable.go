package lvol

import "sync/atomic"

// durability is what the data path knows of the journal's records being
// on stable media, for FUA writes in place.
//
// A thin volume's first write into a cluster, without FUA, completes
// once its mapping record is written: the record may still be in the
// pool's volatile cache. A FUA write in place into that cluster then puts
// its data on stable media, but a power cut could drop the record, and
// after it the cluster reads zeroes: an acknowledged FUA write lost. So a
// FUA write in place also flushes the pool while any applied record may
// not be durable.
//
// applied counts the records applied that were written without FUA
// (counted before the record is applied, so that whoever sees the record
// in a map sees the count); durable is a value of applied that a flush or
// a FUA journal block has made durable: a flush submitted after the
// records it covers were written, or a FUA block, which the journal
// precedes with a flush of the blocks before it.
type durability struct {
	volatile         bool // the pool has a volatile cache; else all is durable once written
	applied, durable atomic.Uint64
}

// pending reports records that may not yet be durable.
func (d *durability) pending() bool { return d.applied.Load() != d.durable.Load() }

// written counts a record written without FUA, before it is applied.
func (d *durability) written() {
	if d.volatile {
		d.applied.Add(1)
	}
}

// covered records that the records counted by applied value a are
// durable: a flush submitted when applied was a has completed.
func (d *durability) covered(a uint64) {
	for {
		cur := d.durable.Load()
		if a <= cur || d.durable.CompareAndSwap(cur, a) {
			return
		}
	}
}

// snapshot is the value of applied a flush submitted now will cover.
func (d *durability) snapshot() uint64 { return d.applied.Load() }
