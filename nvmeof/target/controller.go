package target

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/strata-storage/strata/nvmeof/nqn"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

// Controller is a dynamic controller: created by an admin-queue Connect,
// joined by I/O-queue Connects with its ID, destroyed when its admin queue
// goes or its keep-alive expires.
type Controller struct {
	t         *Target
	sub       *Subsystem // nil for a discovery controller
	id        uint16
	hostNQN   string
	hostID    [16]byte
	admin     *conn
	done      chan struct{} // closed when the admin queue and every I/O queue are gone
	ka        *keepAlive
	createdAt time.Time

	mu          sync.Mutex
	regs        regs
	ioqs        map[uint16]*conn
	numIOQueues uint16 // granted by Set Features (Number of Queues)
	aers        []uint16
	aenConfig   uint32
	changedNS   []uint32
	changedOver bool // more changes than the log holds
	aenMasked   bool // an event was sent; masked until the log is read
	features    map[uint8]uint32
	failed      bool
}

// maxChangedNS is the capacity of the Changed Namespace List log.
const maxChangedNS = 1024

func newController(admin *conn, sub *Subsystem, hostNQN string, hostID [16]byte, katoMs uint32) (*Controller, nvme.Status) {
	c := &Controller{
		t: admin.t, sub: sub, hostNQN: hostNQN, hostID: hostID, admin: admin,
		done: make(chan struct{}), createdAt: time.Now(),
		regs: newRegs(MaxQueueEntries, capTimeout500ms), ioqs: make(map[uint16]*conn),
		numIOQueues: MaxIOQueues, features: make(map[uint8]uint32),
	}
	if sub == nil {
		c.regs = newRegs(adminQueueEntries, capTimeout500ms)
		c.id = 0xffff - 1 // discovery controllers are not tracked per subsystem
	} else {
		id, err := sub.allocControllerID(c)
		if err != nil {
			admin.log.Warn("connect refused", "err", err)
			return nil, nvme.ConnectBusy
		}
		c.id = id
	}
	kato := time.Duration(katoMs) * time.Millisecond
	if kato == 0 && sub != nil {
		kato = defaultKATO
	}
	c.ka = newKeepAlive(kato, c.keepAliveExpired)
	c.features[nvme.FeatKeepAliveTimer] = uint32(kato / time.Millisecond)
	return c, nvme.Success
}

func (c *Controller) keepAliveExpired() {
	c.t.mu.Lock()
	c.t.stats.KeepAliveExpiries++
	c.t.mu.Unlock()
	c.admin.log.Warn("keep-alive timeout: tearing the controller down", "kato", c.ka.current())
	c.fail("keep-alive timeout")
}

// fail tears the controller down: every queue's connection is aborted.
func (c *Controller) fail(reason string) {
	c.mu.Lock()
	if c.failed {
		c.mu.Unlock()
		return
	}
	c.failed = true
	conns := []*conn{c.admin}
	for _, q := range c.ioqs {
		conns = append(conns, q)
	}
	c.mu.Unlock()
	c.ka.stop()
	for _, q := range conns {
		q.abort()
	}
}

func (c *Controller) addIOQueue(qid uint16, q *conn) nvme.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed || !c.regs.ready() || qid > c.numIOQueues || c.ioqs[qid] != nil {
		return nvme.InvalidQueueIdentifier
	}
	c.ioqs[qid] = q
	return nvme.Success
}

// queueGone is called when one of the controller's connections ended. The
// admin queue's end destroys the controller.
func (c *Controller) queueGone(q *conn) {
	c.mu.Lock()
	if q == c.admin {
		c.mu.Unlock()
		c.fail("admin queue closed")
		c.mu.Lock()
		c.admin = nil
	} else if c.ioqs[q.qid] == q {
		delete(c.ioqs, q.qid)
	}
	gone := c.admin == nil && len(c.ioqs) == 0
	c.mu.Unlock()
	if gone {
		if c.sub != nil {
			c.sub.releaseControllerID(c.id)
		}
		close(c.done)
		sub := nqn.Discovery
		if c.sub != nil {
			sub = c.sub.NQN()
		}
		c.t.log.Info("controller destroyed", "host", c.hostNQN, "subsystem", sub, "cntlid", c.id)
	}
}

// adminResult is the outcome of an admin command.
type adminResult struct {
	dw0, dw1   uint32
	data       []byte // controller-to-host data
	status     nvme.Status
	held       bool // no response now (AER)
	disconnect bool
}

func fail(st nvme.Status) adminResult { return adminResult{status: st} }

// adminTransfer returns the data transfer of an admin command: its
// direction and length. ok is false where execAdmin fails the command
// whatever its data pointer: an opcode Strata does not implement (Invalid
// Opcode), a log page larger than it transfers (Invalid Field).
func adminTransfer(cmd nvme.Command) (dir direction, n uint32, ok bool) {
	switch cmd.Opcode() {
	case nvme.AdminIdentify:
		return dirControllerToHost, nvme.IdentifySize, true
	case nvme.AdminGetLogPage:
		if n := cmd.LogPageBytes(); n <= MaxTransferBytes {
			return dirControllerToHost, uint32(n), true
		}
	case nvme.AdminSetFeatures, nvme.AdminGetFeatures, nvme.AdminAsyncEvent, nvme.AdminKeepAlive, nvme.AdminAbort:
		return dirNone, 0, true
	case nvme.OpcodeFabrics:
		switch cmd.FCType() {
		case nvme.FabricsConnect:
			return dirHostToController, nvme.ConnectDataSize, true
		case nvme.FabricsPropertyGet, nvme.FabricsPropertySet, nvme.FabricsDisconnect:
			return dirNone, 0, true
		}
	}
	return dirNone, 0, false
}

// execAdmin executes one admin-queue command.
func (c *Controller) execAdmin(cmd nvme.Command, data []byte) adminResult {
	c.ka.reset() // any admin command shows the host is alive
	if cmd.Opcode() == nvme.OpcodeFabrics {
		return c.fabrics(cmd)
	}
	c.mu.Lock()
	ready := c.regs.ready()
	c.mu.Unlock()
	if !ready {
		return fail(nvme.CommandSequenceError)
	}
	switch cmd.Opcode() {
	case nvme.AdminIdentify:
		return c.identify(cmd)
	case nvme.AdminGetLogPage:
		return c.getLogPage(cmd)
	case nvme.AdminSetFeatures:
		return c.setFeatures(cmd)
	case nvme.AdminGetFeatures:
		return c.getFeatures(cmd)
	case nvme.AdminAsyncEvent:
		return c.asyncEventRequest(cmd)
	case nvme.AdminKeepAlive:
		return adminResult{}
	case nvme.AdminAbort:
		// Best effort: commands run to completion quickly, so none is
		// aborted; DW0 bit 0 set says so.
		return adminResult{dw0: 1}
	}
	return fail(nvme.InvalidOpcode)
}

func (c *Controller) fabrics(cmd nvme.Command) adminResult {
	switch cmd.FCType() {
	case nvme.FabricsPropertyGet:
		c.mu.Lock()
		v, ok := c.regs.get(cmd.PropertyOffset(), cmd.PropertySize8())
		c.mu.Unlock()
		if !ok {
			return fail(nvme.InvalidField)
		}
		// An 8-byte value spans DW0 and DW1 of the completion.
		return adminResult{dw0: uint32(v), dw1: uint32(v >> 32)}
	case nvme.FabricsPropertySet:
		return c.propertySet(cmd)
	case nvme.FabricsDisconnect:
		return adminResult{disconnect: true}
	case nvme.FabricsConnect:
		return fail(nvme.CommandSequenceError)
	}
	// Authentication Send/Receive: no DH-HMAC-CHAP yet, and Connect never
	// asks for it (AUTHREQ 0), so a host has no reason to send them.
	return fail(nvme.InvalidOpcode)
}

func (c *Controller) propertySet(cmd nvme.Command) adminResult {
	c.mu.Lock()
	ev, ok := c.regs.set(cmd.PropertyOffset(), cmd.PropertySize8(), cmd.PropertyValue())
	c.mu.Unlock()
	if !ok {
		return fail(nvme.InvalidField)
	}
	if ev&propShutdown != 0 {
		c.flushAll()
		c.mu.Lock()
		c.regs.shutdownDone()
		c.mu.Unlock()
	}
	if ev&propDisabled != 0 {
		// A controller reset: I/O queues are torn down; the host reconnects them.
		c.mu.Lock()
		qs := make([]*conn, 0, len(c.ioqs))
		for _, q := range c.ioqs {
			qs = append(qs, q)
		}
		c.aers = nil
		c.mu.Unlock()
		for _, q := range qs {
			q.abort()
		}
	}
	return adminResult{}
}

// flushAll drains every namespace's volatile cache (shutdown notification).
func (c *Controller) flushAll() {
	if c.sub == nil {
		return
	}
	for _, nsid := range c.sub.namespaceIDs() {
		if ns := c.sub.namespace(nsid); ns != nil {
			if err := flushNamespace(ns); err != nil {
				c.admin.log.Warn("flush on shutdown", "nsid", nsid, "err", err)
			}
		}
	}
}

func (c *Controller) namespaceChanged(nsid uint32) {
	c.mu.Lock()
	found := false
	for _, id := range c.changedNS {
		found = found || id == nsid
	}
	if !found {
		if len(c.changedNS) < maxChangedNS {
			c.changedNS = append(c.changedNS, nsid)
		} else {
			c.changedOver = true
		}
	}
	c.mu.Unlock()
	c.raiseEvent(nsChangedEvent)
}

// nsChangedEvent is the completion DW0 of a Namespace Attribute Changed
// notice: its type, its information and the log page that names the
// namespaces (NVMe Base 2.0, Figure 150).
const nsChangedEvent = uint32(nvme.AsyncEventNotice) | uint32(nvme.AsyncEventNSAttrChanged)<<8 | uint32(nvme.LogChangedNSList)<<16

// raiseEvent completes a pending AER with the event (its DW0), unless
// events of this kind are masked (not enabled, or one is outstanding until
// its log is read); an event that finds no AER waits for the next.
func (c *Controller) raiseEvent(dw0 uint32) {
	c.mu.Lock()
	enabled := c.aenConfig&(1<<8) != 0 // Namespace Attribute Notices
	if !enabled || c.aenMasked || len(c.aers) == 0 || c.admin == nil {
		c.mu.Unlock()
		return
	}
	cid := c.aers[0]
	c.aers = c.aers[1:]
	c.aenMasked = true
	admin := c.admin
	c.mu.Unlock()
	if err := admin.respond(cid, nil, dw0, 0, nvme.Success); err != nil {
		admin.log.Warn("send asynchronous event", "err", err)
	}
}

// asyncEventRequest holds an AER until an event, or answers it at once
// with one that found none outstanding: the controller retains an event
// until it can report it (NVMe Base 2.0, 5.2).
func (c *Controller) asyncEventRequest(cmd nvme.Command) adminResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.aers) >= maxAERs {
		return fail(nvme.AsyncEventLimit)
	}
	retained := len(c.changedNS) > 0 || c.changedOver
	if retained && c.aenConfig&(1<<8) != 0 && !c.aenMasked {
		c.aenMasked = true
		return adminResult{dw0: nsChangedEvent}
	}
	c.aers = append(c.aers, cmd.CID())
	return adminResult{held: true}
}

func (c *Controller) identify(cmd nvme.Command) adminResult {
	cns := uint8(cmd.CDW(10))
	csi := uint8(cmd.CDW(11) >> 24)
	b := make([]byte, nvme.IdentifySize)
	switch cns {
	case nvme.CNSController:
		nvme.EncodeIdentifyController(b, c.controllerInfo())
	case nvme.CNSNamespace, nvme.CNSNSDescriptors:
		if c.sub == nil {
			return fail(nvme.InvalidNamespace)
		}
		ns := c.sub.namespace(cmd.NSID())
		if ns == nil {
			if cns == nvme.CNSNamespace && cmd.NSID() != 0 && cmd.NSID() != 0xffffffff {
				return adminResult{data: b} // an inactive NSID: all zeroes (NVMe 2.0, 5.17.2.1)
			}
			return fail(nvme.InvalidNamespace)
		}
		if cns == nvme.CNSNamespace {
			nvme.EncodeIdentifyNamespace(b, namespaceInfo(ns))
		} else {
			nvme.EncodeNSDescriptors(b, ns.EUI64, ns.NGUID, ns.UUID)
		}
	case nvme.CNSActiveNSList:
		if c.sub != nil {
			nvme.EncodeNSList(b, c.sub.namespaceIDs(), cmd.NSID())
		}
	case nvme.CNSCSController, nvme.CNSCSNamespace:
		// The NVM command set's specific structures hold nothing Strata
		// uses: zeroes for CSI 0, unsupported otherwise.
		if csi != 0 {
			return fail(nvme.InvalidField)
		}
	default:
		return fail(nvme.InvalidField)
	}
	return adminResult{data: b}
}

func namespaceInfo(ns *nsState) *nvme.NamespaceInfo {
	in := ns.Device.Info()
	log2 := uint8(0)
	for bs := in.BlockSize; bs > 1; bs >>= 1 {
		log2++
	}
	// Shared: every controller of the subsystem reaches every namespace
	// (CMIC bit 1 says there may be several), as SPDK reports it.
	return &nvme.NamespaceInfo{Blocks: in.Blocks, BlockSizeLog2: log2, NGUID: ns.NGUID, EUI64: ns.EUI64, DeallocatedZeroes: true, Shared: true}
}

func (c *Controller) controllerInfo() *nvme.ControllerInfo {
	ci := &nvme.ControllerInfo{
		VendorID: 0, Firmware: firmwareRevision, MDTS: mdtsLog2, ControllerID: c.id,
		Version: versionNVMe, AERLimit: maxAERs - 1, KeepAliveGranMs: kasGranularity,
		MaxCmd: MaxQueueEntries, SGLSupport: nvme.SGLSupportTCP,
		IOCCSZ: (nvme.CommandSize + InCapsuleBytes) / 16, IORCSZ: nvme.CompletionSize / 16,
		MaxSGLDescs: 1, LPA: 1 << 2, // extended data for Get Log Page
		FirmwareUpdates: 1<<1 | 1, // slot 1 read-only
		OAES:            1 << 8,   // Namespace Attribute Notices
		CommandsEffects: true,
	}
	if c.sub == nil {
		ci.Discovery = true
		ci.SubNQN = nqn.Discovery
		ci.Model = "Strata discovery"
		ci.Serial = "strata-discovery"
		ci.OAES = 0
		return ci
	}
	ci.Serial, ci.Model, ci.SubNQN = c.sub.cfg.Serial, c.sub.cfg.Model, c.sub.cfg.NQN
	ci.Namespaces = MaxNamespaces
	ci.ONCS = nvme.ONCSCompare | nvme.ONCSDatasetMgmt | nvme.ONCSWriteZeroes
	for _, id := range c.sub.namespaceIDs() {
		if ns := c.sub.namespace(id); ns != nil && ns.Device.Info().VolatileCache {
			ci.VolatileCache = true
		}
	}
	return ci
}

func (c *Controller) getLogPage(cmd nvme.Command) adminResult {
	n, off := cmd.LogPageBytes(), cmd.LogPageOffset()
	if n > MaxTransferBytes || off%4 != 0 {
		return fail(nvme.InvalidField)
	}
	var log []byte
	switch cmd.LogPageID() {
	case nvme.LogErrorInfo:
		log = make([]byte, 64) // one entry, no errors recorded
	case nvme.LogSMART:
		log = c.smartLog()
	case nvme.LogFirmwareSlot:
		log = make([]byte, 512)
		log[0] = 1 // slot 1 active
		nvme.PutPadded(log[8:16], firmwareRevision)
	case nvme.LogChangedNSList:
		log = c.changedNSLog(cmd.CDW(10)&(1<<15) != 0)
	case nvme.LogCommandsEffects:
		log = commandsEffectsLog()
	case nvme.LogDiscovery:
		if c.sub != nil {
			return fail(nvme.InvalidLogPage)
		}
		log = c.discoveryLog()
	default:
		return fail(nvme.InvalidLogPage)
	}
	if off > uint64(len(log)) {
		return fail(nvme.InvalidField)
	}
	out := make([]byte, n)
	copy(out, log[off:])
	return adminResult{data: out}
}

func (c *Controller) smartLog() []byte {
	b := make([]byte, 512)
	b[3] = 100                                   // available spare %
	b[4] = 10                                    // available spare threshold %
	binary.LittleEndian.PutUint16(b[1:], 273+25) // composite temperature, kelvin
	if c.sub != nil {
		var reads, writes uint64
		for _, id := range c.sub.namespaceIDs() {
			if ns := c.sub.namespace(id); ns != nil {
				st := ns.Device.Stats()
				reads += st.ReadBytes
				writes += st.WriteBytes
				binary.LittleEndian.PutUint64(b[64:], binary.LittleEndian.Uint64(b[64:])+st.ReadOps)
				binary.LittleEndian.PutUint64(b[80:], binary.LittleEndian.Uint64(b[80:])+st.WriteOps)
			}
		}
		// Data units read/written: thousands of 512-byte units (2.0, Figure 207).
		binary.LittleEndian.PutUint64(b[32:], (reads/512+999)/1000)
		binary.LittleEndian.PutUint64(b[48:], (writes/512+999)/1000)
	}
	hours := uint64(time.Since(c.createdAt) / time.Hour)
	binary.LittleEndian.PutUint64(b[128:], hours)
	return b
}

func (c *Controller) changedNSLog(retain bool) []byte {
	b := make([]byte, 4096)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changedOver {
		binary.LittleEndian.PutUint32(b, 0xffffffff)
	} else {
		for i, id := range c.changedNS {
			binary.LittleEndian.PutUint32(b[4*i:], id)
		}
	}
	if !retain {
		c.changedNS, c.changedOver = c.changedNS[:0], false
		c.aenMasked = false
	}
	return b
}

// commandsEffectsLog says which commands Strata supports (CSUPP) and which
// change logical block content (LBCC) (NVMe 2.0, 5.16.1.6).
func commandsEffectsLog() []byte {
	b := make([]byte, 4096)
	const csupp, lbcc = 1 << 0, 1 << 1
	for _, op := range []uint8{nvme.AdminGetLogPage, nvme.AdminIdentify, nvme.AdminAbort, nvme.AdminSetFeatures,
		nvme.AdminGetFeatures, nvme.AdminAsyncEvent, nvme.AdminKeepAlive} {
		binary.LittleEndian.PutUint32(b[4*int(op):], csupp)
	}
	for _, op := range []uint8{nvme.IORead, nvme.IOCompare, nvme.IOFlush} {
		binary.LittleEndian.PutUint32(b[1024+4*int(op):], csupp)
	}
	for _, op := range []uint8{nvme.IOWrite, nvme.IOWriteZeroes, nvme.IODatasetMgmt} {
		binary.LittleEndian.PutUint32(b[1024+4*int(op):], csupp|lbcc)
	}
	return b
}

func (c *Controller) discoveryLog() []byte {
	gen, targets := c.t.discoveryEntries(c.hostNQN)
	entries := make([]nvme.DiscoveryEntry, 0, len(targets))
	// A wildcard listener (0.0.0.0, ::) is no address a host can dial: name
	// it by the address this host reached us at.
	local := c.admin.nc.LocalAddr().(*net.TCPAddr).IP
	for _, d := range targets {
		addr := *d.l.ln.Addr().(*net.TCPAddr)
		if addr.IP.IsUnspecified() {
			addr.IP = local
		}
		e := nvme.DiscoveryEntry{
			TrType: nvme.TrTypeTCP, AdrFam: nvme.AdrFamIPv4, SubType: nvme.SubTypeNVM,
			TReq: nvme.TReqNotSpecified, PortID: d.l.portID, CntlID: 0xffff, AdminSQ: adminQueueEntries,
			SvcID: fmt.Sprint(addr.Port), SubNQN: d.sub, Addr: addr.IP.String(),
		}
		if addr.IP.To4() == nil {
			e.AdrFam = nvme.AdrFamIPv6
		}
		if d.current {
			e.SubType = nvme.SubTypeCurrentDisc
		}
		entries = append(entries, e)
	}
	b := make([]byte, nvme.DiscoveryHeaderSize+len(entries)*nvme.DiscoveryEntrySize)
	nvme.EncodeDiscoveryLog(b, gen, entries)
	return b
}

func (c *Controller) setFeatures(cmd nvme.Command) adminResult {
	fid := uint8(cmd.CDW(10))
	if cmd.CDW(10)&(1<<31) != 0 {
		return fail(nvme.FeatureNotSaveable)
	}
	v := cmd.CDW(11)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch fid {
	case nvme.FeatNumQueues:
		if len(c.ioqs) > 0 {
			return fail(nvme.CommandSequenceError)
		}
		nsq, ncq := v&0xffff, v>>16
		if nsq == 0xffff || ncq == 0xffff {
			return fail(nvme.InvalidField)
		}
		granted := uint32(min(nsq, ncq, MaxIOQueues-1))
		c.numIOQueues = uint16(granted + 1)
		return adminResult{dw0: granted | granted<<16}
	case nvme.FeatKeepAliveTimer:
		c.ka.setTimeout(time.Duration(v) * time.Millisecond)
		c.features[fid] = v
	case nvme.FeatAsyncEventConfig:
		c.aenConfig = v
		c.features[fid] = v
	case nvme.FeatVolatileCache:
		// The write cache is the device's; Strata honours Flush and FUA
		// either way and reports the setting back.
		c.features[fid] = v & 1
	case nvme.FeatArbitration, nvme.FeatPowerManagement, nvme.FeatTemperature, nvme.FeatErrorRecovery,
		nvme.FeatIRQCoalescing, nvme.FeatIRQConfig, nvme.FeatWriteAtomicity:
		c.features[fid] = v
	default:
		return fail(nvme.InvalidField)
	}
	return adminResult{}
}

func (c *Controller) getFeatures(cmd nvme.Command) adminResult {
	fid := uint8(cmd.CDW(10))
	c.mu.Lock()
	defer c.mu.Unlock()
	switch fid {
	case nvme.FeatNumQueues:
		n := uint32(c.numIOQueues - 1)
		return adminResult{dw0: n | n<<16}
	case nvme.FeatKeepAliveTimer:
		return adminResult{dw0: uint32(c.ka.current() / time.Millisecond)}
	case nvme.FeatTemperature:
		if v, ok := c.features[fid]; ok {
			return adminResult{dw0: v}
		}
		return adminResult{dw0: 273 + 70} // over-temperature threshold, kelvin
	case nvme.FeatVolatileCache, nvme.FeatAsyncEventConfig, nvme.FeatArbitration, nvme.FeatPowerManagement,
		nvme.FeatErrorRecovery, nvme.FeatIRQCoalescing, nvme.FeatIRQConfig, nvme.FeatWriteAtomicity:
		return adminResult{dw0: c.features[fid]}
	}
	return fail(nvme.InvalidField)
}
