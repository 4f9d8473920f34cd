package nvme

// Admin command opcodes (NVMe Base 2.0, Figure 139).
const (
	AdminDeleteIOSQ  = 0x00
	AdminCreateIOSQ  = 0x01
	AdminGetLogPage  = 0x02
	AdminDeleteIOCQ  = 0x04
	AdminCreateIOCQ  = 0x05
	AdminIdentify    = 0x06
	AdminAbort       = 0x08
	AdminSetFeatures = 0x09
	AdminGetFeatures = 0x0a
	AdminAsyncEvent  = 0x0c
	AdminKeepAlive   = 0x18
	OpcodeFabrics    = 0x7f
)

// NVM command set I/O opcodes (NVM Command Set 1.0, Figure 18).
const (
	IOFlush       = 0x00
	IOWrite       = 0x01
	IORead        = 0x02
	IOCompare     = 0x05
	IOWriteZeroes = 0x08
	IODatasetMgmt = 0x09
)

// Fabrics command types (NVMe-oF 1.1, Figure 8).
const (
	FabricsPropertySet = 0x00
	FabricsConnect     = 0x01
	FabricsPropertyGet = 0x04
	FabricsAuthSend    = 0x05
	FabricsAuthRecv    = 0x06
	FabricsDisconnect  = 0x08
)

// Feature identifiers (NVMe Base 2.0, Figure 271).
const (
	FeatArbitration      = 0x01
	FeatPowerManagement  = 0x02
	FeatTemperature      = 0x04
	FeatErrorRecovery    = 0x05
	FeatVolatileCache    = 0x06
	FeatNumQueues        = 0x07
	FeatIRQCoalescing    = 0x08
	FeatIRQConfig        = 0x09
	FeatWriteAtomicity   = 0x0a
	FeatAsyncEventConfig = 0x0b
	FeatKeepAliveTimer   = 0x0f
	FeatHostID           = 0x81
)

// Log page identifiers (NVMe Base 2.0, Figure 202; NVMe-oF 1.1 for discovery).
const (
	LogErrorInfo       = 0x01
	LogSMART           = 0x02
	LogFirmwareSlot    = 0x03
	LogChangedNSList   = 0x04
	LogCommandsEffects = 0x05
	LogDiscovery       = 0x70
)

// Identify CNS values (NVMe Base 2.0, Figure 273).
const (
	CNSNamespace      = 0x00
	CNSController     = 0x01
	CNSActiveNSList   = 0x02
	CNSNSDescriptors  = 0x03
	CNSCSNamespace    = 0x05 // I/O command set specific namespace
	CNSCSController   = 0x06 // I/O command set specific controller
	CNSCSActiveNSList = 0x07
	CNSIndependentNS  = 0x08 // I/O command set independent namespace
)

// Asynchronous event types and information (Figure 150-153).
const (
	AsyncEventNotice           = 0x2
	AsyncEventNSAttrChanged    = 0x00
	AsyncEventDiscoveryChanged = 0xf0
)
