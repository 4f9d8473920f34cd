package bench

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Pattern is an access pattern.
type Pattern uint8

const (
	Read Pattern = iota
	Write
	RandRead
	RandWrite
	RandRW
)

var patternNames = []string{"read", "write", "randread", "randwrite", "randrw"}

func (p Pattern) String() string {
	if int(p) < len(patternNames) {
		return patternNames[p]
	}
	return "pattern?"
}

// ParsePattern parses a fio-style pattern name.
func ParsePattern(s string) (Pattern, error) {
	for i, n := range patternNames {
		if strings.EqualFold(s, n) {
			return Pattern(i), nil
		}
	}
	return 0, fmt.Errorf("bench: unknown pattern %q (want one of %s)", s, strings.Join(patternNames, ", "))
}

// Random reports whether offsets are random.
func (p Pattern) Random() bool { return p >= RandRead }

// Job describes a run.
type Job struct {
	Pattern    Pattern
	BlockSize  int           // bytes per I/O, a multiple of the device block size
	QueueDepth int           // I/Os kept in flight
	Duration   time.Duration // stop after this long (with IOs, whichever first)
	IOs        uint64        // stop after this many I/Os (0: no limit)
	ReadPct    int           // for RandRW: percentage of reads
	// Span limits the I/O to the first Span bytes of the device after
	// Offset (0: all of them).
	Span uint64
	// Offset moves the span Offset bytes into the device, a multiple of
	// its block size: a baseline on a pool's own device then covers the
	// very bytes a volume of the pool maps.
	Offset uint64
	// Stride is how far one sequential I/O starts after the one before,
	// a multiple of BlockSize (0: BlockSize, back to back). A stride of a
	// volume's cluster size puts each I/O of a pass in a cluster of its
	// own.
	Stride uint64
	// Verify stamps every written block with its LBA and a pattern and
	// checks every block read; the span must be prefilled (Prefill).
	Verify bool
	Seed   uint64
	// Progress, when set, is updated as I/Os complete, for a live display.
	Progress *Progress
}

// Progress counts what a running job has completed so far. The workers add
// to it from their completion paths; anyone may read it.
type Progress struct {
	IOs, Bytes atomic.Uint64
}

func (p *Progress) add(bytes int) {
	if p != nil {
		p.IOs.Add(1)
		p.Bytes.Add(uint64(bytes))
	}
}

// Validate checks the job against a device of blockSize bytes per block and
// capacity bytes.
func (j *Job) Validate(blockSize uint32, capacity uint64) error {
	switch {
	case j.Pattern > RandRW:
		return errors.New("bench: bad pattern")
	case blockSize == 0:
		return errors.New("bench: the device reports 0-byte blocks")
	case j.BlockSize <= 0 || j.BlockSize%int(blockSize) != 0:
		return fmt.Errorf("bench: block size %d is not a positive multiple of the device's %d", j.BlockSize, blockSize)
	case j.QueueDepth <= 0 || j.QueueDepth > 4096:
		return fmt.Errorf("bench: queue depth %d: want 1..4096", j.QueueDepth)
	case j.Duration <= 0 && j.IOs == 0:
		return errors.New("bench: give a duration or an I/O count")
	case j.ReadPct < 0 || j.ReadPct > 100:
		return fmt.Errorf("bench: read percentage %d: want 0..100", j.ReadPct)
	case j.Offset%uint64(blockSize) != 0 || j.Offset >= capacity:
		return fmt.Errorf("bench: offset %d is not a block boundary within the device's %d bytes", j.Offset, capacity)
	case j.Stride%uint64(j.BlockSize) != 0:
		return fmt.Errorf("bench: stride %d is not a multiple of the block size %d", j.Stride, j.BlockSize)
	case j.span(capacity) < uint64(j.BlockSize):
		return fmt.Errorf("bench: span of %d bytes is smaller than one I/O", j.span(capacity))
	}
	return nil
}

// span returns the bytes the job's I/O covers, from Offset on.
func (j *Job) span(capacity uint64) uint64 {
	left := capacity - min(j.Offset, capacity)
	if j.Span == 0 || j.Span > left {
		return left
	}
	return j.Span
}

// strideIOs returns how many I/O-sized slots a sequential pattern moves
// from one I/O to the next.
func (j *Job) strideIOs() uint64 {
	if j.Stride == 0 {
		return 1
	}
	return j.Stride / uint64(j.BlockSize)
}
