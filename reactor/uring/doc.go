// Package uring is Strata's io_uring binding over golang.org/x/sys/unix.
//
// It is the only place where the rings shared with the kernel are touched,
// and so the only place in the reactor that needs package unsafe. Its
// invariants:
//
//   - Ring memory (SQ ring, CQ ring, SQE array) is mmap'd from the ring fd and
//     lives outside the Go heap; pointers into it are never seen by the GC and
//     stay valid until Close unmaps them.
//   - Indices shared with the kernel (SQ head/tail, CQ head/tail, SQ flags,
//     CQ overflow) are read and written only with sync/atomic, which is
//     sequentially consistent and so at least as strong as the kernel's
//     smp_load_acquire/smp_store_release pairing. An SQE is fully written
//     before the store of the tail that publishes it; a CQE is copied out
//     before the store of the head that gives its slot back.
//   - A Ring is owned by one goroutine. With SetupSingleIssuer (which the
//     reactor asks for) that goroutine must also be locked to the OS thread
//     that created the ring, because the kernel checks the submitting task.
//   - Memory the kernel reads or writes for an operation (data buffers,
//     iovec arrays) must stay valid and unmoved until its completion is
//     reaped. Callers give it memory outside the Go heap (internal/iomem) or
//     heap memory they keep reachable; the Go heap does not move objects, but
//     goroutine stacks do, so stack memory must never be handed over.
//   - The CQ is sized by the kernel (cq_entries, normally twice sq_entries)
//     and each CQE is 16 bytes: SetupCQE32 is never requested.
//   - A call to Enter may consume fewer SQEs than asked and post any number
//     of CQEs; nothing here assumes one completion per submission.
package uring
