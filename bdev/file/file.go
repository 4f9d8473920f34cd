// Package file is the uring device: a regular file or a block device driven
// through the reactors' io_uring with O_DIRECT, so that no page cache sits
// between Strata and the medium.
//
// Each reactor's channel registers the file with that reactor's ring and
// keeps a fixed table of operations (one per ring entry), so the I/O path
// allocates nothing. Short transfers are resubmitted for the remainder;
// EAGAIN/EINTR completions are retried a bounded number of times. Write
// Zeroes and Unmap use fallocate (ZERO_RANGE / PUNCH_HOLE); where the
// filesystem refuses one mode the device falls back, once and for all, to
// the other and finally to writing zeroes, so both always read back zeroes.
package file

import (
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor"
)

// Scheme is the URI scheme: uring:///path/to/file-or-device?size=1GiB&block_size=4096.
const Scheme = "uring"

// DefaultBlockSize is the logical block size of a regular file when none
// is asked for (block devices report theirs).
const DefaultBlockSize = 4096

// ErrDirectIO reports a file system that refuses O_DIRECT.
var ErrDirectIO = errors.New("file: O_DIRECT refused")

// Options configures Open.
type Options struct {
	Path string
	// BlockSize is the logical block size; 0 takes the block device's own,
	// or DefaultBlockSize for a file. It must be a multiple of a block
	// device's logical block size.
	BlockSize uint32
	// Size grows a regular file (sparsely) to this many bytes if it is
	// smaller, creating it if needed. 0 uses the file as it is.
	Size uint64
}

// zeroing strategies, tried in order and demoted when the system refuses.
const (
	zeroByFallocate int32 = iota // FALLOC_FL_ZERO_RANGE (write zeroes) or PUNCH_HOLE (unmap)
	zeroByOtherMode              // the other fallocate mode
	zeroByWriting                // plain writes from a zeroed buffer
)

// zeroChunk is the size of the zero buffer used when fallocate is refused.
const zeroChunk = 1 << 20

// Device is a file or block device.
type Device struct {
	bdev.Base
	fd       int
	blockDev bool
	zeroMode [2]atomic.Int32 // strategy for write-zeroes [0] and unmap [1]
	zeroBuf  *iomem.Region   // read-only zeroes for zeroByWriting
}

// FromURI is the registry factory for Scheme.
func FromURI(name string, u *url.URL) (bdev.Device, error) {
	size, bs, err := bdev.QueryOptions(u)
	if err != nil {
		return nil, err
	}
	if u.Path == "" || u.Host != "" {
		return nil, fmt.Errorf("%w: want uring:///absolute/path, got %q", bdev.ErrBadURI, u.String())
	}
	return Open(name, Options{Path: u.Path, BlockSize: bs, Size: size})
}

// Open opens (and with Options.Size creates or grows) the file or block
// device at o.Path for direct I/O.
func Open(name string, o Options) (*Device, error) {
	// Check the kind first: O_DIRECT on other kinds fails with a misleading EINVAL.
	var st unix.Stat_t
	if err := unix.Stat(o.Path, &st); err == nil {
		if kind := st.Mode & unix.S_IFMT; kind != unix.S_IFREG && kind != unix.S_IFBLK {
			return nil, fmt.Errorf("file: %s is neither a regular file nor a block device", o.Path)
		}
	}
	flags := unix.O_RDWR | unix.O_DIRECT | unix.O_CLOEXEC
	if o.Size > 0 {
		flags |= unix.O_CREAT
	}
	fd, err := unix.Open(o.Path, flags, 0o600)
	if errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("%w by the file system of %s: put it on one that supports direct I/O (ext4, xfs, tmpfs) or use a block device", ErrDirectIO, o.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("file: open %s: %w", o.Path, err)
	}
	d, err := newDevice(name, fd, o)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return d, nil
}

func newDevice(name string, fd int, o Options) (*Device, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("file: stat %s: %w", o.Path, err)
	}
	d := &Device{fd: fd}
	var size uint64
	bs := o.BlockSize
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		d.blockDev = true
		var err error
		if size, err = unix.IoctlGetUint64(fd, unix.BLKGETSIZE64); err != nil {
			return nil, fmt.Errorf("file: %s: BLKGETSIZE64: %w", o.Path, err)
		}
		lbs, err := unix.IoctlGetInt(fd, unix.BLKSSZGET)
		if err != nil {
			return nil, fmt.Errorf("file: %s: BLKSSZGET: %w", o.Path, err)
		}
		if bs == 0 {
			bs = uint32(lbs)
		}
		if bs%uint32(lbs) != 0 {
			return nil, fmt.Errorf("file: %s: block size %d is not a multiple of the device's %d", o.Path, bs, lbs)
		}
		if o.Size != 0 {
			return nil, fmt.Errorf("file: %s is a block device: its size cannot be set", o.Path)
		}
	case unix.S_IFREG:
		size = uint64(st.Size)
		if o.Size > size {
			if err := unix.Ftruncate(fd, int64(o.Size)); err != nil {
				return nil, fmt.Errorf("file: grow %s to %d bytes: %w", o.Path, o.Size, err)
			}
			size = o.Size
		}
		if bs == 0 {
			bs = DefaultBlockSize
		}
	default:
		return nil, fmt.Errorf("file: %s is neither a regular file nor a block device", o.Path)
	}
	if !bdev.ValidBlockSize(bs) {
		return nil, fmt.Errorf("file: block size %d: want a power of two from 512 to 65536", bs)
	}
	if size < uint64(bs) {
		return nil, fmt.Errorf("file: %s holds %d bytes, less than one %d-byte block (give a size to grow it)", o.Path, size, bs)
	}
	zeroBuf, err := iomem.Map(zeroChunk)
	if err != nil {
		return nil, err
	}
	d.zeroBuf = zeroBuf
	d.Base = bdev.NewBase(bdev.Info{
		Name: name, Product: Scheme, UUID: bdev.NewUUID(),
		BlockSize: bs, Blocks: size / uint64(bs), BufAlign: int(bs),
		VolatileCache: true, // the medium may cache writes: Flush means fdatasync
	})
	return d, nil
}

// Close syncs and closes the file; no channel may be open.
func (d *Device) Close() error {
	if n := d.OpenChannels(); n > 0 {
		return fmt.Errorf("file %s: %d channels still open", d.Info().Name, n)
	}
	if d.fd < 0 {
		return fmt.Errorf("file %s: already closed", d.Info().Name)
	}
	errSync := unix.Fdatasync(d.fd)
	errClose := unix.Close(d.fd)
	d.fd = -1
	d.zeroBuf.Unmap()
	if err := errors.Join(errSync, errClose); err != nil {
		return fmt.Errorf("file %s: close: %w", d.Info().Name, err)
	}
	return nil
}

// OpenBackend registers the file with r's ring and sets up the channel's
// operation table. Called on r.
func (d *Device) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) {
	slot, err := r.RegisterFile(d.fd)
	if err != nil {
		return nil, err
	}
	n := r.RingEntries()
	b := &backend{d: d, r: r, slot: slot, bs: uint64(d.Info().BlockSize), ops: make([]op, n), free: make([]*op, 0, n)}
	for i := range b.ops {
		b.ops[i].b = b
		b.free = append(b.free, &b.ops[i])
	}
	b.retry.b = b
	return b, nil
}
