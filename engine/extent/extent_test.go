package extent

import (
	"errors"
	"math/rand/v2"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/require"
)

func TestAllocFirstFit(t *testing.T) {
	l := All(100)
	a, l, err := l.Alloc(10)
	require.NoError(t, err)
	require.Equal(t, Extent{0, 10}, a)
	b, l, err := l.Alloc(20)
	require.NoError(t, err)
	require.Equal(t, Extent{10, 20}, b)
	l, err = l.Free(a, 100)
	require.NoError(t, err)
	require.Equal(t, List{{0, 10}, {30, 70}}, l)
	// First fit: 5 blocks go into the hole at 0, 15 past b.
	c, l, err := l.Alloc(5)
	require.NoError(t, err)
	require.Equal(t, Extent{0, 5}, c)
	d, l, err := l.Alloc(15)
	require.NoError(t, err)
	require.Equal(t, Extent{30, 15}, d)
	require.Equal(t, List{{5, 5}, {45, 55}}, l)
	_, _, err = l.Alloc(56)
	require.ErrorIs(t, err, ErrNoSpace)
	require.ErrorContains(t, err, "largest free extent has 55")
	require.Equal(t, uint64(60), l.FreeBlocks())
	require.Equal(t, uint64(55), l.Largest())
	_, _, err = l.Alloc(0)
	require.ErrorIs(t, err, ErrInvalid)
}

func TestListsAreValues(t *testing.T) {
	l := List{{0, 10}, {20, 10}}
	_, _, err := l.Alloc(10)
	require.NoError(t, err)
	_, err = l.Take(Extent{22, 2})
	require.NoError(t, err)
	_, err = l.Free(Extent{10, 10}, 30)
	require.NoError(t, err)
	require.Equal(t, List{{0, 10}, {20, 10}}, l)
}

func TestTakeAndFreeAfter(t *testing.T) {
	l := List{{10, 10}, {40, 5}}
	require.Equal(t, uint64(10), l.FreeAfter(10))
	require.Zero(t, l.FreeAfter(11))
	require.Zero(t, l.FreeAfter(30))
	n, err := l.Take(Extent{12, 3})
	require.NoError(t, err)
	require.Equal(t, List{{10, 2}, {15, 5}, {40, 5}}, n)
	n, err = l.Take(Extent{40, 5})
	require.NoError(t, err)
	require.Equal(t, List{{10, 10}}, n)
	for _, x := range []Extent{{9, 2}, {15, 6}, {20, 1}, {45, 1}, {0, 0}} {
		_, err := l.Take(x)
		require.Error(t, err, "%v", x)
	}
}

func TestFreeRejects(t *testing.T) {
	l := List{{10, 10}}
	for _, tc := range []struct {
		x    Extent
		want error
	}{
		{Extent{5, 6}, ErrOverlap}, {Extent{19, 2}, ErrOverlap}, {Extent{12, 1}, ErrOverlap},
		{Extent{0, 0}, ErrInvalid}, {Extent{95, 10}, ErrOutRange}, {Extent{1 << 63, 1 << 63}, ErrOutRange},
	} {
		_, err := l.Free(tc.x, 100)
		require.ErrorIs(t, err, tc.want, "%v", tc.x)
	}
}

func TestValidate(t *testing.T) {
	require.NoError(t, List(nil).Validate(0))
	require.NoError(t, List{{0, 5}, {6, 4}}.Validate(10))
	for _, bad := range []List{
		{{0, 0}}, {{0, 11}}, {{5, 1}, {6, 1}}, {{5, 2}, {6, 1}}, {{6, 1}, {1, 1}}, {{^uint64(0), 2}},
	} {
		require.ErrorIs(t, bad.Validate(10), ErrInvalid, "%v", bad)
	}
}

// model is the simple reference: one bool per block.
type model []bool

func (m model) firstFit(n uint64) (uint64, bool) {
	run := uint64(0)
	for i, used := range m {
		if used {
			run = 0
			continue
		}
		run++
		if run == n {
			return uint64(i) + 1 - n, true
		}
	}
	return 0, false
}

func (m model) list() List {
	var l List
	for i := 0; i < len(m); {
		if m[i] {
			i++
			continue
		}
		j := i
		for j < len(m) && !m[j] {
			j++
		}
		l = append(l, Extent{uint64(i), uint64(j - i)})
		i = j
	}
	return l
}

// A random mix of allocations, frees and in-place growth agrees with the
// block map at every step, and the list stays valid.
func TestAgainstBlockMap(t *testing.T) {
	check := func(seed uint64) bool {
		rng := rand.New(rand.NewPCG(seed, 3))
		total := uint64(1 + rng.IntN(200))
		m := make(model, total)
		l := All(total)
		var live []Extent
		for step := range 60 {
			switch op := rng.IntN(3); {
			case op == 0 || len(live) == 0:
				n := uint64(1 + rng.IntN(int(total)))
				got, next, err := l.Alloc(n)
				start, ok := m.firstFit(n)
				if ok != (err == nil) || ok && got != (Extent{start, n}) {
					t.Logf("seed %d step %d: alloc %d = %v %v, model %d %v", seed, step, n, got, err, start, ok)
					return false
				}
				if ok {
					for b := got.Start; b < got.End(); b++ {
						m[b] = true
					}
					live = append(live, got)
					l = next
				} else if !errors.Is(err, ErrNoSpace) {
					return false
				}
			case op == 1:
				i := rng.IntN(len(live))
				next, err := l.Free(live[i], total)
				if err != nil {
					t.Logf("seed %d step %d: free %v: %v", seed, step, live[i], err)
					return false
				}
				for b := live[i].Start; b < live[i].End(); b++ {
					m[b] = false
				}
				l = next
				live = append(live[:i], live[i+1:]...)
			default:
				i := rng.IntN(len(live))
				e := live[i]
				more := uint64(1 + rng.IntN(8))
				canGrow := l.FreeAfter(e.End()) >= more
				next, err := l.Take(Extent{e.End(), more})
				free := e.End()+more <= total
				for b := e.End(); free && b < e.End()+more; b++ {
					free = !m[b]
				}
				if canGrow != free || (err == nil) != free {
					t.Logf("seed %d step %d: grow %v by %d: %v, model %v", seed, step, e, more, err, free)
					return false
				}
				if free {
					for b := e.End(); b < e.End()+more; b++ {
						m[b] = true
					}
					live[i].Blocks += more
					l = next
				}
			}
			if l.Validate(total) != nil || !equalLists(l, m.list()) {
				t.Logf("seed %d step %d: list %v, model %v", seed, step, l, m.list())
				return false
			}
		}
		return true
	}
	require.NoError(t, quick.Check(check, &quick.Config{MaxCount: 3000}))
}

func equalLists(a, b List) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
