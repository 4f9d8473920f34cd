package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// validState is a state file with one of everything: pool p0 of 100
// blocks holds v0 at [0, 10) and v1 at [30, 50).
const validState = `{
  "version": 3,
  "pools": [{"name": "p0", "uri": "malloc:///?size=400KiB", "uuid": "11111111-2222-4333-8444-555555555555",
             "block_size": 4096, "blocks": 100,
             "free_extents": [{"start_block": 10, "blocks": 20}, {"start_block": 50, "blocks": 50}]}],
  "volumes": [
    {"name": "v0", "pool": "p0", "kind": "extent", "uuid": "21111111-2222-4333-8444-555555555555", "nguid": "0102030405060708090a0b0c0d0e0f10",
     "serial": "0123456789abcdef0123", "extent": {"start_block": 0, "blocks": 10}},
    {"name": "v1", "pool": "p0", "kind": "extent", "uuid": "31111111-2222-4333-8444-555555555555", "nguid": "1102030405060708090a0b0c0d0e0f10",
     "serial": "1123456789abcdef0123", "extent": {"start_block": 30, "blocks": 20}}],
  "shares": [{"volume": "v0", "nqn": "nqn.2024-01.io.strata:v0", "listeners": ["127.0.0.1:4420"], "hosts": [], "allow_any_host": true}],
  "hosts": [{"name": "h0", "nqn": "nqn.2024-01.io.example:h0"}]
}`

func TestDecodeValidStateRoundTrips(t *testing.T) {
	s, _, err := decodeState([]byte(validState))
	require.NoError(t, err)
	require.Len(t, s.pools, 1)
	require.Len(t, s.volumes, 2)
	require.Equal(t, "0123456789abcdef0123", s.volumes["v0"].Serial)
	require.Equal(t, byte(0x10), s.volumes["v0"].NGUID[15])
	b, err := s.encode()
	require.NoError(t, err)
	again, _, err := decodeState(b)
	require.NoError(t, err)
	require.Equal(t, s, again)
	b2, err := again.encode()
	require.NoError(t, err)
	require.Equal(t, string(b), string(b2), "encoding is deterministic")
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"not json", `{`, `[`, "not JSON"},
		{"no version", `"version": 3,`, ``, `no "version"`},
		{"old version", `"version": 3`, `"version": 0`, "unknown version 0"},
		{"unknown field", `"version": 3,`, `"version": 3, "extra": true,`, "unknown field"},
		{"unknown kind", `"kind": "extent", "uuid": "31`, `"kind": "mirror", "uuid": "31`, `unknown kind "mirror"`},
		{"volume store volume in the file", `"kind": "extent", "uuid": "31`, `"kind": "lvol", "uuid": "31`, "never in the state file"},
		{"unknown format", `"blocks": 100,`, `"blocks": 100, "format": "zfs",`, `unknown format "zfs"`},
		{"volume store with extents", `"blocks": 100,`, `"blocks": 100, "format": "lvol", "cluster_size": 65536,`, "with free extents"},
		{"extent pool with clusters", `"blocks": 100,`, `"blocks": 100, "cluster_size": 65536,`, "extent pool with a cluster size"},
		{"share of a pool that is no store", `{"volume": "v0",`, `{"volume": "v0", "pool": "p0",`, `no volume store pool "p0"`},
		{"no kind", `"kind": "extent", "uuid": "31`, `"uuid": "31`, `unknown kind ""`},
		{"trailing data", `"name": "h0", "nqn": "nqn.2024-01.io.example:h0"}]
}`, `"name": "h0", "nqn": "nqn.2024-01.io.example:h0"}]
} {}`, "after top-level value"},
		{"overlap", `{"start_block": 10, "blocks": 20}`, `{"start_block": 5, "blocks": 25}`, "overlaps"},
		{"gap", `{"start_block": 10, "blocks": 20}`, `{"start_block": 11, "blocks": 19}`, "neither free nor in a volume"},
		{"tail gap", `{"start_block": 50, "blocks": 50}`, `{"start_block": 50, "blocks": 49}`, "neither free nor in a volume"},
		{"volume beyond pool", `"start_block": 30, "blocks": 20}`, `"start_block": 90, "blocks": 20}`, "outside pool"},
		{"volume without pool", `"pool": "p0", "kind": "extent", "uuid": "31`, `"pool": "px", "kind": "extent", "uuid": "31`, `no pool "px"`},
		{"bad serial", `"serial": "1123456789abcdef0123"`, `"serial": "1123456789abcdef01234"`, "bad serial"},
		{"duplicate uuid", `"uuid": "31111111`, `"uuid": "21111111`, "same UUID"},
		{"bad uuid", `"uuid": "31111111-`, `"uuid": "3111111-`, "uuid"},
		{"bad nguid", `"nguid": "1102`, `"nguid": "zz02`, "invalid byte"},
		{"share without volume", `{"volume": "v0"`, `{"volume": "v9"`, "no volume"},
		{"share bad nqn", `"nqn.2024-01.io.strata:v0"`, `"nqn.bad"`, "subsystem NQN"},
		{"share bad listener", `"127.0.0.1:4420"`, `"localhost:4420"`, "listener"},
		{"share no host", `"allow_any_host": true`, `"allow_any_host": false`, "no host could connect"},
		{"bad pool name", `"name": "p0"`, `"name": "p 0"`, "bad name"},
		{"bad block size", `"block_size": 4096`, `"block_size": 4000`, "bad geometry"},
		{"free list unsorted", `[{"start_block": 10, "blocks": 20}, {"start_block": 50, "blocks": 50}]`, `[{"start_block": 50, "blocks": 50}, {"start_block": 10, "blocks": 20}]`, "precedes"},
		{"duplicate volume", `{"name": "v1", "pool": "p0", "kind": "extent", "uuid": "31`, `{"name": "v0", "pool": "p0", "kind": "extent", "uuid": "31`, "listed twice"},
		{"bad host nqn", `"nqn.2024-01.io.example:h0"`, `"host0"`, "host"},
		{"unknown work", `"blocks": 20}}]`, `"blocks": 20}, "work": {"op": "rebuild", "online_blocks": 0, "done_blocks": 0}}]`, `unknown work "rebuild"`},
		{"create work online", `"blocks": 20}}]`, `"blocks": 20}, "work": {"op": "create", "online_blocks": 1, "done_blocks": 0}}]`, "with 1 blocks online"},
		{"resize work from nothing", `"blocks": 20}}]`, `"blocks": 20}, "work": {"op": "resize", "online_blocks": 0, "done_blocks": 0}}]`, "from 0 blocks online"},
		{"resize work to no more", `"blocks": 20}}]`, `"blocks": 20}, "work": {"op": "resize", "online_blocks": 20, "done_blocks": 0}}]`, "from 20 blocks online to 20"},
		{"work done beyond", `"blocks": 20}}]`, `"blocks": 20}, "work": {"op": "resize", "online_blocks": 10, "done_blocks": 11}}]`, "11 blocks done of 10"},
		{"shared while created", `"blocks": 10}}`, `"blocks": 10}, "work": {"op": "create", "online_blocks": 0, "done_blocks": 3}}`, "still being created"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, validState, tc.old, "test case edits nothing")
			_, _, err := decodeState([]byte(strings.Replace(validState, tc.old, tc.new, 1)))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// Work owed to a volume is kept exactly, and a volume with none writes no
// "work" at all (files from before work existed read the same).
func TestWorkRoundTrips(t *testing.T) {
	doc := strings.Replace(validState, `"blocks": 20}}]`, `"blocks": 20}, "work": {"op": "resize", "online_blocks": 8, "done_blocks": 5}}]`, 1)
	s, _, err := decodeState([]byte(doc))
	require.NoError(t, err)
	require.Equal(t, workRecord{Op: workResize, OnlineBlocks: 8, DoneBlocks: 5}, s.volumes["v1"].Work)
	require.Equal(t, workRecord{}, s.volumes["v0"].Work)
	b, err := s.encode()
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(b), `"work"`))
	again, _, err := decodeState(b)
	require.NoError(t, err)
	require.Equal(t, s, again)
}

func TestLoadStateErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StateFile)
	s, version, _, err := loadState(path)
	require.NoError(t, err, "a missing file is an empty state")
	require.True(t, s.empty())
	require.Equal(t, StateVersion, version)

	require.NoError(t, os.WriteFile(path, []byte("garbage"), 0o600))
	_, _, _, err = loadState(path)
	require.ErrorIs(t, err, ErrCorruptState)
	require.ErrorContains(t, err, path)

	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(validState, `"version": 3`, `"version": 4`, 1)), 0o600))
	_, _, _, err = loadState(path)
	require.ErrorIs(t, err, ErrFutureState)
	require.False(t, errors.Is(err, ErrCorruptState))
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, "version 4")

	require.NoError(t, os.WriteFile(path, []byte(validState), 0o600))
	s, version, orig, err := loadState(path)
	require.NoError(t, err)
	require.Len(t, s.volumes, 2)
	require.Equal(t, StateVersion, version)
	require.Equal(t, validState, string(orig))
}

func TestEncodeRefusesInconsistentState(t *testing.T) {
	s, _, err := decodeState([]byte(validState))
	require.NoError(t, err)
	v := s.volumes["v1"]
	v.Extent.Blocks++ // now overlaps the free extent at 50
	s.volumes["v1"] = v
	_, err = s.encode()
	require.ErrorContains(t, err, "inconsistent state")
}

func TestCloneIsDeep(t *testing.T) {
	s, _, err := decodeState([]byte(validState))
	require.NoError(t, err)
	c := s.clone()
	c.pools["p0"].Free[0].Blocks = 1
	c.shares["v0"].Listeners[0] = "x"
	require.Equal(t, uint64(20), s.pools["p0"].Free[0].Blocks)
	require.Equal(t, "127.0.0.1:4420", s.shares["v0"].Listeners[0])
}

// stateV2 is validState as version 2 wrote it: the same, as it has no
// volume store pool.
var stateV2 = strings.Replace(validState, `"version": 3`, `"version": 2`, 1)

// stateV1 is validState as version 1 wrote it: no volume kinds.
var stateV1 = strings.ReplaceAll(strings.Replace(validState, `"version": 3`, `"version": 1`, 1), `"kind": "extent", `, ``)

// Every earlier version's file decodes to what the current version says
// of the same state: one case per version, so a new version that forgets
// its migration fails here.
func TestMigrateEveryEarlierVersion(t *testing.T) {
	want, _, err := decodeState([]byte(validState))
	require.NoError(t, err)
	earlier := map[int]string{1: stateV1, 2: stateV2}
	for v := 1; v < StateVersion; v++ {
		doc, ok := earlier[v]
		require.True(t, ok, "no test state file of version %d", v)
		got, version, err := decodeState([]byte(doc))
		require.NoError(t, err, "version %d", v)
		require.Equal(t, v, version)
		require.Equal(t, want, got, "version %d", v)
	}
}

// A migrated file still passes every check of the current version: a
// migration cannot smuggle in what decodeCurrent would refuse.
func TestMigratedStateIsChecked(t *testing.T) {
	bad := strings.Replace(stateV1, `{"start_block": 10, "blocks": 20}`, `{"start_block": 5, "blocks": 25}`, 1)
	_, _, err := decodeState([]byte(bad))
	require.ErrorContains(t, err, "overlaps")
	_, _, err = decodeState([]byte(strings.Replace(stateV1, `"volumes": [`, `"volumes": [7, `, 1)))
	require.ErrorContains(t, err, "volume 0 is not an object")
}

// Block counts survive a migration exactly, beyond float64's 53 bits.
func TestMigrationKeepsLargeNumbers(t *testing.T) {
	doc := `{"version": 1, "pools": [], "volumes": [], "shares": [], "hosts": [], "x": 18446744073709551615}`
	b, err := migrate([]byte(doc), 1)
	require.NoError(t, err)
	require.Contains(t, string(b), "18446744073709551615")
}

// A volume store pool's record: no extents, no volumes in the file; a
// share of one of its volumes names the pool and loads while the volume
// is unknown (the pool's device not yet open), and is written back as
// it was.
func TestVolumeStorePoolState(t *testing.T) {
	doc := strings.Replace(validState, `"pools": [`, `"pools": [{"name": "s0", "uri": "malloc:///?size=64MiB", "uuid": "41111111-2222-4333-8444-555555555555",
             "block_size": 4096, "blocks": 16384, "free_extents": [], "format": "lvol", "cluster_size": 1048576},
            `, 1)
	doc = strings.Replace(doc, `"shares": [`, `"shares": [{"volume": "lv", "pool": "s0", "nqn": "nqn.2024-01.io.strata:lv", "listeners": ["127.0.0.1:4420"], "hosts": [], "allow_any_host": true},
             `, 1)
	s, _, err := decodeState([]byte(doc))
	require.NoError(t, err)
	require.True(t, s.pools["s0"].isLvol())
	require.Equal(t, "s0", s.shares["lv"].Pool)

	// The store's volume, as the pool's opening adds it: in memory only.
	s.volumes["lv"] = volumeRecord{Name: "lv", Pool: "s0", Kind: KindLvol, UUID: textUUID{9}, NGUID: hexID{9}, Serial: "abc"}
	b, err := s.encode()
	require.NoError(t, err)
	require.NotContains(t, string(b), `"name": "lv"`, "a store's volume is not written")
	again, _, err := decodeState(b)
	require.NoError(t, err)
	require.Equal(t, s.shares, again.shares)
	require.Equal(t, s.pools, again.pools)

	// A store's volume in an extent pool, or the share naming another
	// pool, is refused.
	bad := s.clone()
	bad.volumes["lv"] = volumeRecord{Name: "lv", Pool: "p0", Kind: KindLvol, UUID: textUUID{9}, NGUID: hexID{9}, Serial: "abc"}
	_, err = bad.encode()
	require.ErrorContains(t, err, `of kind "lvol" in pool "p0"`)
}
