package bdev

import (
	"errors"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestStatusFromErrno(t *testing.T) {
	for _, tc := range []struct {
		op    Op
		errno unix.Errno
		want  Status
	}{
		{OpWrite, 0, StatusOK},
		{OpWrite, unix.ENOSPC, StatusNoSpace},
		{OpWrite, unix.EDQUOT, StatusNoSpace},
		{OpRead, unix.EIO, StatusReadError},
		{OpWrite, unix.EIO, StatusWriteFault},
		{OpFlush, unix.EIO, StatusWriteFault},
		{OpUnmap, unix.EOPNOTSUPP, StatusUnsupported},
		{OpRead, unix.EINVAL, StatusInvalidRequest},
		{OpRead, unix.ECANCELED, StatusAborted},
		{OpRead, unix.ENODEV, StatusNotReady},
		{OpRead, unix.EPERM, StatusInternal},
	} {
		require.Equal(t, tc.want, StatusFromErrno(tc.op, tc.errno), "%v %v", tc.op, tc.errno)
	}
}

func TestStatusStringsAndErrors(t *testing.T) {
	for s := range numStatus {
		require.NotEmpty(t, s.String())
		require.NotContains(t, s.String(), "status(")
	}
	require.Equal(t, "status(77)", Status(77).String())
	require.NoError(t, StatusOK.Err())
	err := StatusNoSpace.Err()
	require.ErrorIs(t, err, ErrStatus)
	var se *StatusError
	require.True(t, errors.As(err, &se))
	require.Equal(t, StatusNoSpace, se.Status)
	require.Equal(t, "write-zeroes", OpWriteZeroes.String())
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"4096": 4096, "64MiB": 64 << 20, "1GiB": 1 << 30, "1g": 1 << 30, "10GB": 10e9,
		"512k": 512 << 10, "2TiB": 2 << 40, " 7 ": 7, "3b": 3,
	} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5G", "12XB", "99999999999999999999", "20000000TiB"} {
		_, err := ParseSize(bad)
		require.Error(t, err, bad)
	}
}

func TestRegistry(t *testing.T) {
	made := 0
	reg := NewRegistry(map[string]Factory{
		"fake": func(name string, u *url.URL) (Device, error) {
			if u.Query().Get("fail") != "" {
				return nil, errors.New("refused")
			}
			made++
			return &fakeDevice{Base: NewBase(Info{Name: name, BlockSize: 512, Blocks: 1})}, nil
		},
	})
	_, err := reg.Create("a", "fake:///")
	require.NoError(t, err)
	_, err = reg.Create("a", "fake:///")
	require.ErrorIs(t, err, ErrExists)
	_, err = reg.Create("b", "nope:///")
	require.ErrorIs(t, err, ErrBadScheme)
	_, err = reg.Create("b", "fake:///?fail=1")
	require.ErrorContains(t, err, "refused")
	_, err = reg.Get("b")
	require.ErrorIs(t, err, ErrNotFound, "a failed create leaves no name behind")
	_, err = reg.Create("bad name", "fake:///")
	require.ErrorContains(t, err, "invalid name")
	_, err = reg.Create("c", "fake://%zz")
	require.ErrorIs(t, err, ErrBadURI)
	require.Equal(t, []string{"a"}, reg.Names())
	d, err := reg.Get("a")
	require.NoError(t, err)
	require.Equal(t, "a", d.Info().Name)
	require.NoError(t, reg.Delete("a"))
	require.True(t, d.(*fakeDevice).closed)
	require.ErrorIs(t, reg.Delete("a"), ErrNotFound)
	require.Equal(t, 1, made)
}

func TestNewUUIDIsVersion4(t *testing.T) {
	a, b := NewUUID(), NewUUID()
	require.NotEqual(t, a, b)
	require.Equal(t, byte(0x40), a[6]&0xf0)
	require.Equal(t, byte(0x80), a[8]&0xc0)
	require.Len(t, a.String(), 36)
}

func TestLatencyBuckets(t *testing.T) {
	cases := []struct {
		ns     int64
		bucket int
	}{
		{0, 0}, {1, 0}, {8000, 0}, {8001, 1}, {16000, 1}, {16001, 2}, {32000, 2},
		{32001, 3}, {int64(LatencyBucketBound(20)), 20}, {int64(LatencyBucketBound(20)) + 1, 21}, {1 << 62, 21},
	}
	for _, c := range cases {
		if got := latencyBucket(c.ns); got != c.bucket {
			t.Errorf("latencyBucket(%d) = %d, want %d", c.ns, got, c.bucket)
		}
		if c.bucket < LatencyBuckets-1 && uint64(c.ns) > LatencyBucketBound(c.bucket) {
			t.Errorf("%d ns is above bucket %d's bound %d", c.ns, c.bucket, LatencyBucketBound(c.bucket))
		}
	}
}

func TestParseURI(t *testing.T) {
	u, err := ParseURI("pcie://0000:00:04.0?ns=2")
	if err != nil || u.Scheme != "pcie" || u.Host != "0000:00:04.0" || u.Query().Get("ns") != "2" || u.Path != "" {
		t.Fatalf("pcie URI: %+v %v", u, err)
	}
	u, err = ParseURI("uring:///var/lib/strata/pool.img?size=1GiB")
	if err != nil || u.Scheme != "uring" || u.Host != "" || u.Path != "/var/lib/strata/pool.img" || u.Query().Get("size") != "1GiB" {
		t.Fatalf("uring URI: %+v %v", u, err)
	}
	u, err = ParseURI("malloc:///?size=1MiB")
	if err != nil || u.Scheme != "malloc" || u.Query().Get("size") != "1MiB" {
		t.Fatalf("malloc URI: %+v %v", u, err)
	}
	if _, err := ParseURI("uring:///bad%zzescape"); err == nil {
		t.Fatal("bad escape accepted")
	}
}

func TestRequestQueue(t *testing.T) {
	var q RequestQueue
	if !q.Empty() || q.Pop() != nil {
		t.Fatal("zero queue not empty")
	}
	rs := make([]Request, 3)
	for i := range rs {
		q.Push(&rs[i])
	}
	for i := range rs {
		if got := q.Pop(); got != &rs[i] || got.Next != nil {
			t.Fatalf("pop %d: got %p, want %p (FIFO, unlinked)", i, got, &rs[i])
		}
	}
	if !q.Empty() {
		t.Fatal("not empty after popping all")
	}
	q.Push(&rs[1])
	if q.Pop() != &rs[1] || !q.Empty() {
		t.Fatal("reuse after emptying")
	}
	// Remove from the middle, the tail and the head; pushing after the
	// tail's removal links to the new tail.
	for i := range rs {
		q.Push(&rs[i])
	}
	extra := &Request{}
	require.False(t, q.Remove(extra), "not queued")
	require.True(t, q.Remove(&rs[1]))
	require.True(t, q.Remove(&rs[2]))
	q.Push(extra)
	require.True(t, q.Remove(&rs[0]))
	require.False(t, q.Remove(&rs[0]), "removed already")
	require.Same(t, extra, q.Pop())
	require.True(t, q.Empty())
}

func TestEventsReachSubscribers(t *testing.T) {
	d := &fakeDevice{Base: NewBase(Info{Name: "ev", BlockSize: 512, Blocks: 8})}
	var got []Event
	cancel := d.Subscribe(func(ev Event) { got = append(got, ev) })
	other := d.Subscribe(func(Event) {})
	other()
	require.NoError(t, d.Quiesce(t.Context()))
	d.SetBlocks(16)
	d.Resume()
	d.Notify(Event{Kind: EventResized})
	require.Len(t, got, 1)
	require.Equal(t, EventResized, got[0].Kind)
	require.EqualValues(t, 16, got[0].Info.Blocks, "the event carries the Info after it")
	require.EqualValues(t, 16, d.Info().Blocks)
	cancel()
	d.Notify(Event{Kind: EventRemoved})
	require.Len(t, got, 1, "no events after cancel")
	require.Equal(t, "resized", EventResized.String())
}
