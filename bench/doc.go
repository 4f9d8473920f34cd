// Package bench is Strata's load generator: it drives a block device (a
// local bdev channel now, an NVMe/TCP namespace through the Go host later)
// with a fio-like job — pattern, block size, queue depth, duration or I/O
// count, optional data verification — and reports IOPS, bandwidth, latency
// percentiles and the CPU it used. The strata perf command and make bench
// are built on it.
//
// A worker lives on one reactor and keeps QueueDepth requests in flight:
// each completion records its latency and submits the next request from the
// callback, so the generator allocates nothing per I/O and measures the
// device, not itself.
package bench
