package file

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
)

const testSize = 64 << 20

func openFile(t *testing.T, path string, o Options) *Device {
	t.Helper()
	o.Path = path
	d, err := Open("file0", o)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// mountFS mounts a file system of type fstype (tmpfs, ramfs) for the test.
func mountFS(t *testing.T, fstype, opts string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, unix.Mount(fstype, dir, fstype, 0, opts), "mount %s (the tests run as root)", fstype)
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func TestConformanceRegularFile(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		return openFile(t, filepath.Join(t.TempDir(), "img"), Options{Size: testSize})
	}, true)
}

func TestConformance512ByteBlocks(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		return openFile(t, filepath.Join(t.TempDir(), "img"), Options{Size: testSize, BlockSize: 512})
	}, true)
}

// tmpfs has no FALLOC_FL_ZERO_RANGE: write-zeroes falls back to punching.
func TestConformanceTmpfs(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		return openFile(t, filepath.Join(mountFS(t, "tmpfs", "size=128m"), "img"), Options{Size: testSize})
	}, true)
}

// With fallocate refused altogether, zeroes are written.
func TestConformanceZeroingByWrites(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		d := openFile(t, filepath.Join(t.TempDir(), "img"), Options{Size: testSize})
		d.zeroMode[0].Store(zeroByWriting)
		d.zeroMode[1].Store(zeroByWriting)
		return d
	}, true)
}

func TestConformanceBlockDevice(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		img := filepath.Join(t.TempDir(), "loop.img")
		require.NoError(t, os.WriteFile(img, nil, 0o600))
		require.NoError(t, os.Truncate(img, testSize))
		out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
		require.NoError(t, err, "losetup: %s", out)
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		d := openFile(t, dev, Options{})
		require.True(t, d.blockDev)
		require.Equal(t, uint64(testSize), d.Info().Size())
		return d
	}, true)
}

func TestFullFileSystemFailsWithNoSpace(t *testing.T) {
	dir := mountFS(t, "tmpfs", "size=1m")
	d := openFile(t, filepath.Join(dir, "img"), Options{Size: 16 << 20}) // sparse, larger than the fs
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 64<<10)
	bdevtest.Fill(buf, 1)
	blocks := uint32(len(buf) / int(d.Info().BlockSize))
	var st bdev.Status
	var lba uint64
	for ; lba < d.Info().Blocks; lba += uint64(blocks) {
		if st = c.Do(t, bdev.OpWrite, lba, blocks, buf); st != bdev.StatusOK {
			break
		}
	}
	require.Equal(t, bdev.StatusNoSpace, st, "writes past the file system's capacity")
	require.Less(t, lba*uint64(d.Info().BlockSize), uint64(2<<20))
	// Space freed by unmap can be written again, and earlier data is intact.
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpUnmap, 0, blocks, nil))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, blocks, buf))
	got := bdevtest.Buffers(t, len(buf))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, uint64(blocks), blocks, got))
	require.Equal(t, buf, got)
}

func TestDirectIORefusedClearly(t *testing.T) {
	dir := mountFS(t, "ramfs", "")
	_, err := Open("f", Options{Path: filepath.Join(dir, "img"), Size: 1 << 20})
	require.ErrorIs(t, err, ErrDirectIO)
	require.ErrorContains(t, err, "supports direct I/O")
}

func TestShrunkFileFailsReadsPastItsEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	d := openFile(t, path, Options{Size: 1 << 20})
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	require.NoError(t, os.Truncate(path, 4096+1000)) // someone else shrinks it
	buf := bdevtest.Buffers(t, 8192)
	require.Equal(t, bdev.StatusReadError, c.Do(t, bdev.OpRead, 200, 1, buf[:4096]), "wholly past the end")
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 1, buf[:4096]))
	// The second block is short (1000 bytes, then EOF): the remainder is
	// resubmitted and finds nothing.
	require.Equal(t, bdev.StatusReadError, c.Do(t, bdev.OpRead, 0, 2, buf))
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Open("f", Options{Path: filepath.Join(dir, "missing")})
	require.ErrorIs(t, err, os.ErrNotExist)
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	_, err = Open("f", Options{Path: empty})
	require.ErrorContains(t, err, "less than one")
	_, err = Open("f", Options{Path: dir})
	require.ErrorContains(t, err, "neither a regular file nor a block device")
	_, err = Open("f", Options{Path: "/dev/zero"})
	require.ErrorContains(t, err, "neither a regular file nor a block device")
	_, err = Open("f", Options{Path: filepath.Join(dir, "x"), Size: 1 << 20, BlockSize: 1000})
	require.ErrorContains(t, err, "block size")
}

func TestFromURI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pool.img")
	u, _ := url.Parse("uring://" + path + "?size=4MiB&block_size=512")
	d, err := FromURI("p", u)
	require.NoError(t, err)
	require.Equal(t, uint64(8192), d.Info().Blocks)
	require.NoError(t, d.Close())
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.EqualValues(t, 4<<20, st.Size())
	// Reopened without a size, it keeps the file as it is.
	u, _ = url.Parse("uring://" + path)
	d, err = FromURI("p", u)
	require.NoError(t, err)
	require.Equal(t, uint64(1024), d.Info().Blocks)
	require.NoError(t, d.Close())
	u, _ = url.Parse("uring://host/relative")
	_, err = FromURI("p", u)
	require.ErrorIs(t, err, bdev.ErrBadURI)
}

// Defect 6: concurrent Write Zeroes on tmpfs (no FALLOC_FL_ZERO_RANGE) all
// fail their first fallocate; each demoted the device's shared strategy,
// so it skipped PUNCH_HOLE for writing zeroes, and an op issued with
// fallocate then read its completion as a zero-byte write: a write fault.
// The strategy is the op's own, and the device is demoted once.
func TestConcurrentZeroesDemoteOnce(t *testing.T) {
	for round := range 5 {
		d := openFile(t, filepath.Join(mountFS(t, "tmpfs", "size=64m"), "img"), Options{Size: 16 << 20})
		c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
		buf := bdevtest.Buffers(t, 64<<10)
		bdevtest.Fill(buf, uint64(round)+1)
		blocks := uint32(len(buf) / int(d.Info().BlockSize))
		const n = 32
		for i := range uint64(n) {
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, i*uint64(blocks), blocks, buf))
		}
		var pending []bdevtest.Pending
		for i := range uint64(n) {
			pending = append(pending, c.Start(bdev.OpWriteZeroes, i*uint64(blocks), blocks, nil))
		}
		for i, p := range pending {
			require.Equal(t, bdev.StatusOK, p.Wait(t), "round %d, write zeroes %d", round, i)
		}
		require.Equal(t, zeroByOtherMode, d.zeroMode[0].Load(), "round %d: demoted past PUNCH_HOLE", round)
		got := bdevtest.Buffers(t, len(buf))
		for i := range uint64(n) {
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, i*uint64(blocks), blocks, got))
			require.Equal(t, make([]byte, len(got)), []byte(got), "round %d, range %d", round, i)
		}
	}
}
