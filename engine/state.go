package engine

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/engine/extent"
	"github.com/strata-storage/strata/internal/atomicfile"
	"github.com/strata-storage/strata/nvmeof/nqn"
)

// StateVersion is the version of the state file this code writes. It
// reads every earlier version too, migrating it (migrations).
const StateVersion = 3

// migrations[v] turns a state file of version v, as a JSON document, into
// one of version v+1. Each is a pure function of the document: no device
// is touched, so a migration cannot half happen; the file is rewritten
// only once the result loads.
var migrations = map[int]func(doc map[string]any) error{
	// Version 2 names every volume's kind; version 1 had extent volumes
	// only.
	1: func(doc map[string]any) error {
		vols, _ := doc["volumes"].([]any)
		for i, v := range vols {
			vol, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("volume %d is not an object", i)
			}
			vol["kind"] = KindExtent
		}
		return nil
	},
	// Version 3 adds volume store pools ("format": "lvol"), whose volumes
	// live on their devices, and shares that name such a volume's pool.
	// A version 2 file has neither: every pool is an extent pool.
	2: func(map[string]any) error { return nil },
}

// StateFile is the state file's name in the data directory.
const StateFile = "state.json"

// maxStateBytes bounds the state file read at start: far above any real
// configuration, low enough that a wrong file cannot exhaust memory.
const maxStateBytes = 64 << 20

// stateFile is the JSON layout of state.json:
//
//	{"version": 3,
//	 "pools":   [{"name", "uri", "uuid", "block_size", "blocks", "free_extents": [{"start_block", "blocks"}],
//	              "format", "cluster_size"}],
//	 "volumes": [{"name", "pool", "kind", "uuid", "nguid", "serial", "extent": {"start_block", "blocks"},
//	              "work": {"op", "online_blocks", "done_blocks"}}],
//	 "shares":  [{"volume", "pool", "nqn", "listeners": ["ip:port"], "hosts": [nqn], "allow_any_host"}],
//	 "hosts":   [{"name", "nqn"}]}
//
// Every list is sorted by name. A pool's free extents and its volumes'
// extents tile the pool exactly; Load checks that and every other
// invariant, so a state that loads is one the engine can act on. A
// volume's "work" (see workRecord) is there only while it is owed device
// work; version 2 files written before work existed have none.
//
// A volume store pool ("format": "lvol"; absent is "extent") has no free
// extents and no volumes in the file: its device holds them (KindLvol),
// and the pool's UUID is the store's, which the device must hold. A
// share of such a volume names the pool, so that it can be checked while
// the pool's device is away.
type stateFile struct {
	Version int            `json:"version"`
	Pools   []poolRecord   `json:"pools"`
	Volumes []volumeRecord `json:"volumes"`
	Shares  []shareRecord  `json:"shares"`
	Hosts   []hostRecord   `json:"hosts"`
}

type poolRecord struct {
	Name      string      `json:"name"`
	URI       string      `json:"uri"`
	UUID      textUUID    `json:"uuid"`
	BlockSize uint32      `json:"block_size"`
	Blocks    uint64      `json:"blocks"`
	Free      extent.List `json:"free_extents"`
	// Format is FormatLvol for a volume store; "" is FormatExtent.
	Format      string `json:"format,omitempty"`
	ClusterSize uint64 `json:"cluster_size,omitempty"`
}

type volumeRecord struct {
	Name   string        `json:"name"`
	Pool   string        `json:"pool"`
	Kind   string        `json:"kind"`
	UUID   textUUID      `json:"uuid"`
	NGUID  hexID         `json:"nguid"`
	Serial string        `json:"serial"`
	Extent extent.Extent `json:"extent"`
	Work   workRecord    `json:"work,omitzero"`
}

// Ops of workRecord.
const (
	workCreate = "create" // a new volume: hosts see nothing of it yet
	workResize = "resize" // a volume growing: hosts see it at its old size
)

// workRecord is device work a volume is owed before hosts may see all of
// it (for an extent volume: clearing its new space). Blocks from
// OnlineBlocks to the volume's size are not ready yet; DoneBlocks of them
// are, as of the last checkpoint (the work may be further along). Hosts
// see the first OnlineBlocks blocks meanwhile: none while it is created.
//
// The record is written with the mutation that makes the work, and cleared
// in the write that makes the volume whole, before hosts see the new
// blocks: after a crash, Open resumes the work from DoneBlocks, and a
// volume never shows blocks its work has not reached. Doing work again is
// harmless, as nobody sees those blocks yet. The zero record: no work.
type workRecord struct {
	Op           string `json:"op"`
	OnlineBlocks uint64 `json:"online_blocks"`
	DoneBlocks   uint64 `json:"done_blocks"`
}

// check verifies w for a volume of blocks blocks.
func (w workRecord) check(blocks uint64) error {
	switch {
	case w == workRecord{}:
		return nil
	case w.Op == workCreate && w.OnlineBlocks != 0:
		return fmt.Errorf("work %q with %d blocks online", w.Op, w.OnlineBlocks)
	case w.Op == workResize && (w.OnlineBlocks == 0 || w.OnlineBlocks >= blocks):
		return fmt.Errorf("work %q from %d blocks online to %d", w.Op, w.OnlineBlocks, blocks)
	case w.Op != workCreate && w.Op != workResize:
		return fmt.Errorf("unknown work %q", w.Op)
	case w.DoneBlocks > blocks-w.OnlineBlocks:
		return fmt.Errorf("work %q: %d blocks done of %d", w.Op, w.DoneBlocks, blocks-w.OnlineBlocks)
	}
	return nil
}

type shareRecord struct {
	Volume string `json:"volume"`
	// Pool is the volume's pool when that is a volume store ("" else).
	Pool         string   `json:"pool,omitempty"`
	NQN          string   `json:"nqn"`
	Listeners    []string `json:"listeners"`
	Hosts        []string `json:"hosts"`
	AllowAnyHost bool     `json:"allow_any_host"`
}

type hostRecord struct {
	Name string `json:"name"`
	NQN  string `json:"nqn"`
}

// textUUID is a UUID written as 8-4-4-4-12 hex digits.
type textUUID bdev.UUID

func (u textUUID) MarshalText() ([]byte, error) { return []byte(bdev.UUID(u).String()), nil }

func (u *textUUID) UnmarshalText(b []byte) error {
	s := strings.ReplaceAll(string(b), "-", "")
	if len(b) != 36 || len(s) != 32 {
		return fmt.Errorf("uuid %q: want 8-4-4-4-12 hex digits", b)
	}
	_, err := hex.Decode(u[:], []byte(s))
	return err
}

// hexID is a 16-byte identifier (an NGUID) written as 32 hex digits.
type hexID [16]byte

func (h hexID) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h[:])), nil }

func (h *hexID) UnmarshalText(b []byte) error {
	if len(b) != 32 {
		return fmt.Errorf("id %q: want 32 hex digits", b)
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// state is the engine's configuration in memory: the contents of the state
// file. Records hold no shared slices; clone copies deeply, so a mutation
// builds the next state on a clone and swaps it in once it is on disk.
type state struct {
	pools   map[string]poolRecord
	volumes map[string]volumeRecord
	shares  map[string]shareRecord // by volume name
	hosts   map[string]hostRecord
}

func newState() *state {
	return &state{
		pools: map[string]poolRecord{}, volumes: map[string]volumeRecord{},
		shares: map[string]shareRecord{}, hosts: map[string]hostRecord{},
	}
}

func (s *state) empty() bool {
	return len(s.pools)+len(s.volumes)+len(s.shares)+len(s.hosts) == 0
}

func (s *state) clone() *state {
	c := &state{pools: maps.Clone(s.pools), volumes: maps.Clone(s.volumes), shares: maps.Clone(s.shares), hosts: maps.Clone(s.hosts)}
	for k, p := range c.pools {
		p.Free = slices.Clone(p.Free)
		c.pools[k] = p
	}
	for k, sh := range c.shares {
		sh.Listeners, sh.Hosts = slices.Clone(sh.Listeners), slices.Clone(sh.Hosts)
		c.shares[k] = sh
	}
	return c
}

func (s *state) file() stateFile {
	f := stateFile{Version: StateVersion, Pools: []poolRecord{}, Volumes: []volumeRecord{}, Shares: []shareRecord{}, Hosts: []hostRecord{}}
	for _, k := range slices.Sorted(maps.Keys(s.pools)) {
		f.Pools = append(f.Pools, s.pools[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.volumes)) {
		if s.volumes[k].Kind != KindLvol { // the pool's device holds those
			f.Volumes = append(f.Volumes, s.volumes[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.shares)) {
		f.Shares = append(f.Shares, s.shares[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.hosts)) {
		f.Hosts = append(f.Hosts, s.hosts[k])
	}
	return f
}

// encode returns the state file's bytes, after checking the state (a state
// that would not load again is never written).
func (s *state) encode() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("engine: refusing to write an inconsistent state (a bug): %w", err)
	}
	b, err := json.MarshalIndent(s.file(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("engine: encode state: %w", err)
	}
	return append(b, '\n'), nil
}

// saveState durably replaces the state file at path with s.
func saveState(path string, s *state) error {
	b, err := s.encode()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("engine: write state file: %w", err)
	}
	return nil
}

// loadState reads the state file at path, and the version it was written
// in (StateVersion for a missing file, an empty state). A file of an
// earlier version is migrated in memory, and its original bytes returned
// so the caller can keep them before writing the new version; anything
// unreadable, inconsistent or of a later version is an error naming the
// file.
func loadState(path string) (s *state, version int, orig []byte, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newState(), StateVersion, nil, nil
	}
	if err != nil {
		return nil, 0, nil, fmt.Errorf("engine: state file %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	if err != nil {
		return nil, 0, nil, fmt.Errorf("engine: state file %s: %w", path, err)
	}
	if len(b) > maxStateBytes {
		return nil, 0, nil, corrupt(path, fmt.Errorf("larger than %d bytes", maxStateBytes))
	}
	s, version, err = decodeState(b)
	if err != nil {
		if errors.Is(err, ErrFutureState) {
			return nil, 0, nil, fmt.Errorf("%w: %s: %v", ErrFutureState, path, err)
		}
		return nil, 0, nil, corrupt(path, err)
	}
	return s, version, b, nil
}

func corrupt(path string, why error) error {
	return fmt.Errorf("%w %s: %v (strata never resets its state: restore the file from a backup or move it away to start empty)", ErrCorruptState, path, why)
}

// decodeState parses and checks a state file's bytes, migrating an
// earlier version, and returns the version they were in.
func decodeState(b []byte) (*state, int, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, 0, fmt.Errorf("not JSON: %v", err)
	}
	switch {
	case head.Version == nil:
		return nil, 0, errors.New(`no "version"`)
	case *head.Version > StateVersion:
		return nil, 0, fmt.Errorf("%w: version %d; this strata reads versions up to %d: upgrade strata", ErrFutureState, *head.Version, StateVersion)
	case *head.Version < StateVersion:
		migrated, err := migrate(b, *head.Version)
		if err != nil {
			return nil, 0, err
		}
		s, _, err := decodeState(migrated)
		return s, *head.Version, err
	}
	s, err := decodeCurrent(b)
	return s, StateVersion, err
}

// migrate brings a state file of version from up to StateVersion.
func migrate(b []byte, from int) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // block counts are 64-bit: no round trip through float64
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	for v := from; v < StateVersion; v++ {
		m, ok := migrations[v]
		if !ok {
			return nil, fmt.Errorf("unknown version %d", from)
		}
		if err := m(doc); err != nil {
			return nil, fmt.Errorf("migrate from version %d: %v", v, err)
		}
		doc["version"] = v + 1
	}
	return json.Marshal(doc)
}

// decodeCurrent parses and checks a state file of StateVersion.
func decodeCurrent(b []byte) (*state, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f stateFile // json.Unmarshal above rejected trailing data
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	s := newState()
	for _, p := range f.Pools {
		if _, dup := s.pools[p.Name]; dup {
			return nil, fmt.Errorf("pool %q listed twice", p.Name)
		}
		s.pools[p.Name] = p
	}
	for _, v := range f.Volumes {
		if v.Kind == KindLvol {
			return nil, fmt.Errorf("volume %q of kind %q: a volume store's volumes live on its device, never in the state file", v.Name, v.Kind)
		}
		if _, dup := s.volumes[v.Name]; dup {
			return nil, fmt.Errorf("volume %q listed twice", v.Name)
		}
		s.volumes[v.Name] = v
	}
	for _, sh := range f.Shares {
		if _, dup := s.shares[sh.Volume]; dup {
			return nil, fmt.Errorf("share of volume %q listed twice", sh.Volume)
		}
		s.shares[sh.Volume] = sh
	}
	for _, h := range f.Hosts {
		if _, dup := s.hosts[h.Name]; dup {
			return nil, fmt.Errorf("host %q listed twice", h.Name)
		}
		s.hosts[h.Name] = h
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// check verifies every invariant of the state.
func (s *state) check() error {
	used := map[string][]extent.Extent{} // allocated extents by pool
	for name, p := range s.pools {
		if err := p.check(name); err != nil {
			return err
		}
	}
	uuids := map[textUUID]string{}
	for name, v := range s.volumes {
		p, ok := s.pools[v.Pool]
		if err := v.check(name); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("volume %q: no pool %q", name, v.Pool)
		}
		if (v.Kind == KindLvol) != p.isLvol() {
			return fmt.Errorf("volume %q: a volume of kind %q in pool %q of format %q", name, v.Kind, v.Pool, p.Format)
		}
		if other, dup := uuids[v.UUID]; dup {
			return fmt.Errorf("volumes %q and %q have the same UUID", other, name)
		}
		uuids[v.UUID] = name
		if v.Kind == KindLvol {
			continue // its store checks it
		}
		for _, x := range kinds[v.Kind].used(v) {
			if x.Blocks == 0 || x.Start > p.Blocks || x.Blocks > p.Blocks-x.Start {
				return fmt.Errorf("volume %q: extent %v outside pool %q of %d blocks", name, x, v.Pool, p.Blocks)
			}
			used[v.Pool] = append(used[v.Pool], x)
		}
		if err := v.Work.check(kinds[v.Kind].blocks(v)); err != nil {
			return fmt.Errorf("volume %q: %w", name, err)
		}
	}
	for name, p := range s.pools {
		if p.isLvol() {
			continue
		}
		if err := tiles(p, used[name]); err != nil {
			return fmt.Errorf("pool %q: %w", name, err)
		}
	}
	nqns := map[string]string{}
	for vol, sh := range s.shares {
		v, ok := s.volumes[vol]
		switch {
		case sh.Volume != vol:
			return fmt.Errorf("share %q: of volume %q", vol, sh.Volume)
		case sh.Pool != "":
			// A volume store's volume: known only while its pool is up.
			if p, pok := s.pools[sh.Pool]; !pok || !p.isLvol() {
				return fmt.Errorf("share %q: no volume store pool %q", vol, sh.Pool)
			}
			if ok && v.Pool != sh.Pool {
				return fmt.Errorf("share %q: of pool %q, its volume is in pool %q", vol, sh.Pool, v.Pool)
			}
		case !ok:
			return fmt.Errorf("share %q: no volume %q", vol, sh.Volume)
		}
		if v.Work.Op == workCreate {
			return fmt.Errorf("share %q: its volume is still being created", vol)
		}
		if _, err := checkShare(sh); err != nil {
			return fmt.Errorf("share %q: %w", vol, err)
		}
		if other, dup := nqns[sh.NQN]; dup {
			return fmt.Errorf("shares %q and %q have the same NQN", other, vol)
		}
		nqns[sh.NQN] = vol
	}
	hostNQNs := map[string]string{}
	for name, h := range s.hosts {
		if err := bdev.ValidName(name); err != nil || h.Name != name {
			return fmt.Errorf("host %q: bad name", name)
		}
		if err := nqn.Validate(h.NQN); err != nil {
			return fmt.Errorf("host %q: %w", name, err)
		}
		if other, dup := hostNQNs[h.NQN]; dup {
			return fmt.Errorf("hosts %q and %q have the same NQN", other, name)
		}
		hostNQNs[h.NQN] = name
	}
	return nil
}

func (p poolRecord) check(name string) error {
	if err := bdev.ValidName(name); err != nil || p.Name != name {
		return fmt.Errorf("pool %q: bad name", name)
	}
	if _, err := bdev.ParseURI(p.URI); err != nil || p.URI == "" {
		return fmt.Errorf("pool %q: bad URI %q", name, p.URI)
	}
	if !bdev.ValidBlockSize(p.BlockSize) || p.Blocks == 0 {
		return fmt.Errorf("pool %q: bad geometry: %d blocks of %d bytes", name, p.Blocks, p.BlockSize)
	}
	if p.UUID == (textUUID{}) {
		return fmt.Errorf("pool %q: no UUID", name)
	}
	switch p.Format {
	case "":
		if p.ClusterSize != 0 {
			return fmt.Errorf("pool %q: an extent pool with a cluster size", name)
		}
	case FormatLvol:
		if len(p.Free) > 0 || p.ClusterSize == 0 {
			return fmt.Errorf("pool %q: a volume store with free extents or no cluster size", name)
		}
		return nil
	default:
		return fmt.Errorf("pool %q: unknown format %q", name, p.Format)
	}
	if err := p.Free.Validate(p.Blocks); err != nil {
		return fmt.Errorf("pool %q: %w", name, err)
	}
	return nil
}

func (v volumeRecord) check(name string) error {
	if err := bdev.ValidName(name); err != nil || v.Name != name {
		return fmt.Errorf("volume %q: bad name", name)
	}
	if _, ok := kinds[v.Kind]; !ok && v.Kind != KindLvol {
		return fmt.Errorf("volume %q: unknown kind %q", name, v.Kind)
	}
	if v.UUID == (textUUID{}) || v.NGUID == (hexID{}) {
		return fmt.Errorf("volume %q: missing UUID or NGUID", name)
	}
	if !validSerial(v.Serial) {
		return fmt.Errorf("volume %q: bad serial %q", name, v.Serial)
	}
	return nil
}

// tiles checks that a pool's free extents and allocated extents cover it
// exactly, without overlap.
func tiles(p poolRecord, used []extent.Extent) error {
	all := append(slices.Clone([]extent.Extent(p.Free)), used...)
	sort.Slice(all, func(i, j int) bool { return all[i].Start < all[j].Start })
	var next uint64
	for _, e := range all {
		if e.Start != next {
			if e.Start < next {
				return fmt.Errorf("extent %v overlaps another", e)
			}
			return fmt.Errorf("blocks [%d, %d) are neither free nor in a volume", next, e.Start)
		}
		next = e.End()
	}
	if next != p.Blocks {
		return fmt.Errorf("blocks [%d, %d) are neither free nor in a volume", next, p.Blocks)
	}
	return nil
}

// serialLen is the length of Identify Controller SN (NVMe Base 2.0, 5.17.2.1).
const serialLen = 20

func validSerial(s string) bool {
	if s == "" || len(s) > serialLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
