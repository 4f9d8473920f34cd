package target

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const ccLinux = ccEN | sqEntryLog2<<ccIOSQESShift | cqEntryLog2<<ccIOCQESShift

func TestCapabilities(t *testing.T) {
	r := newRegs(128, 10)
	c, ok := r.get(propCAP, true)
	require.True(t, ok)
	require.EqualValues(t, 127, c&0xffff, "MQES is 0's based")
	require.NotZero(t, c&(1<<16), "CQR")
	require.EqualValues(t, 10, (c>>24)&0xff, "TO")
	require.NotZero(t, c&(1<<37), "NVM command set")
	require.Zero(t, (c>>48)&0xff, "MPSMIN = MPSMAX = 4 KiB")
	vs, ok := r.get(propVS, false)
	require.True(t, ok)
	require.EqualValues(t, 0x00010400, vs)
	_, ok = r.get(propCAP, false)
	require.False(t, ok, "CAP is an 8-byte property")
	_, ok = r.get(0x40, false)
	require.False(t, ok)
}

// The Linux host's sequence: enable, wait for RDY, later shut down and
// wait for SHST complete; a reset clears RDY.
func TestEnableShutdownReset(t *testing.T) {
	r := newRegs(128, 10)
	require.False(t, r.ready())
	ev, ok := r.set(propCC, false, ccLinux)
	require.True(t, ok)
	require.Equal(t, propEnabled, ev)
	require.True(t, r.ready())
	cc, _ := r.get(propCC, false)
	require.EqualValues(t, ccLinux, cc)

	ev, _ = r.set(propCC, false, ccLinux|1<<ccSHNShift)
	require.Equal(t, propShutdown, ev)
	r.shutdownDone()
	csts, _ := r.get(propCSTS, false)
	require.EqualValues(t, cstsRDY|cstsSHSTComplete, csts)

	ev, _ = r.set(propCC, false, 0)
	require.Equal(t, propDisabled, ev)
	require.False(t, r.ready())
	csts, _ = r.get(propCSTS, false)
	require.Zero(t, csts)
	ev, _ = r.set(propCC, false, 0)
	require.Equal(t, propNone, ev, "writing the same CC again changes nothing")
}

func TestEnableWithBadParametersIsFatal(t *testing.T) {
	for name, cc := range map[string]uint32{
		"sqes": ccEN | 5<<ccIOSQESShift | cqEntryLog2<<ccIOCQESShift,
		"cqes": ccEN | sqEntryLog2<<ccIOSQESShift | 5<<ccIOCQESShift,
		"mps":  ccLinux | 1<<ccMPSShift,
		"css":  ccLinux | 1<<ccCSSShift,
	} {
		r := newRegs(128, 10)
		ev, ok := r.set(propCC, false, uint64(cc))
		require.True(t, ok, name)
		require.Equal(t, propNone, ev, name)
		csts, _ := r.get(propCSTS, false)
		require.EqualValues(t, cstsCFS, csts, name)
	}
}

func TestReadOnlyProperties(t *testing.T) {
	r := newRegs(128, 10)
	for _, off := range []uint32{propCAP, propVS, propCSTS, 0x40} {
		_, ok := r.set(off, off == propCAP, 1)
		require.False(t, ok, "offset %#x", off)
	}
	_, ok := r.set(propCC, true, ccLinux)
	require.False(t, ok, "CC is a 4-byte property")
}

// Defect 3: a write that cleared EN and set SHN together was taken for a
// shutdown only, so RDY stayed 1 and the I/O queues up, even after a later
// CC = 0. EN and SHN are independent: each write is checked for both.
func TestCCResetWhateverElseTheWriteCarries(t *testing.T) {
	shn := uint32(1 << ccSHNShift)
	type step struct {
		cc       uint32
		ev       propEvent
		shutdown bool // the caller reports the shutdown done
		csts     uint32
	}
	for name, steps := range map[string][]step{
		"EN cleared with SHN set": {
			{cc: ccLinux, ev: propEnabled, csts: cstsRDY},
			{cc: ccLinux&^ccEN | shn, ev: propDisabled | propShutdown, shutdown: true, csts: cstsSHSTComplete},
			{cc: 0, ev: propNone, csts: 0},
			{cc: ccLinux, ev: propEnabled, csts: cstsRDY},
		},
		"shutdown, then reset": {
			{cc: ccLinux, ev: propEnabled, csts: cstsRDY},
			{cc: ccLinux | shn, ev: propShutdown, shutdown: true, csts: cstsRDY | cstsSHSTComplete},
			{cc: shn, ev: propDisabled, csts: 0},
			{cc: 0, ev: propNone, csts: 0},
		},
		"enable with SHN set": {
			{cc: ccLinux | shn, ev: propEnabled | propShutdown, shutdown: true, csts: cstsRDY | cstsSHSTComplete},
			{cc: ccLinux, ev: propNone, csts: cstsRDY},
		},
		"reset twice": {
			{cc: ccLinux, ev: propEnabled, csts: cstsRDY},
			{cc: 0, ev: propDisabled, csts: 0},
			{cc: 0, ev: propNone, csts: 0},
		},
	} {
		r := newRegs(128, 10)
		for i, s := range steps {
			ev, ok := r.set(propCC, false, uint64(s.cc))
			require.True(t, ok)
			require.Equal(t, s.ev, ev, "%s: step %d", name, i)
			if s.shutdown {
				r.shutdownDone()
			}
			csts, _ := r.get(propCSTS, false)
			require.EqualValues(t, s.csts, csts, "%s: step %d", name, i)
			require.Equal(t, s.csts&cstsRDY != 0, r.ready(), "%s: step %d", name, i)
		}
	}
}
