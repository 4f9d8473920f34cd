// Package nvme holds the NVMe command formats Strata's target and host
// exchange: submission and completion queue entries as byte-slice views,
// status codes, opcodes, and the Identify and log page structures (NVMe Base
// Specification 2.0; NVMe over Fabrics 1.1 for the fabrics commands).
package nvme

import "fmt"

// Status is a completion status: the Status Code Type in bits 10:8 and the
// Status Code in bits 7:0, plus Do Not Retry in bit 14 (the layout of the
// CQE status field shifted right by one, past the phase bit).
type Status uint16

// Status code types (NVMe Base 2.0, 4.2.3).
const (
	SCTGeneric         = 0
	SCTCommandSpecific = 1
	SCTMediaError      = 2
	SCTPathRelated     = 3
)

const (
	statusDNR   Status = 1 << 14
	statusMore  Status = 1 << 13
	statusSCMax        = 0xff
)

// MakeStatus builds a status from its type and code.
func MakeStatus(sct, sc uint8) Status { return Status(uint16(sct&7)<<8 | uint16(sc)) }

// Generic command statuses (Figure 102).
var (
	Success                  = MakeStatus(SCTGeneric, 0x00)
	InvalidOpcode            = MakeStatus(SCTGeneric, 0x01).DNR()
	InvalidField             = MakeStatus(SCTGeneric, 0x02).DNR()
	CommandIDConflict        = MakeStatus(SCTGeneric, 0x03).DNR()
	DataTransferError        = MakeStatus(SCTGeneric, 0x04)
	InternalError            = MakeStatus(SCTGeneric, 0x06)
	AbortRequested           = MakeStatus(SCTGeneric, 0x07)
	AbortSQDeleted           = MakeStatus(SCTGeneric, 0x08)
	InvalidNamespace         = MakeStatus(SCTGeneric, 0x0b).DNR()
	CommandSequenceError     = MakeStatus(SCTGeneric, 0x0c).DNR()
	InvalidSGLSegment        = MakeStatus(SCTGeneric, 0x0d).DNR()
	InvalidSGLCount          = MakeStatus(SCTGeneric, 0x0e).DNR()
	DataSGLLengthInvalid     = MakeStatus(SCTGeneric, 0x0f).DNR()
	SGLDescriptorTypeInvalid = MakeStatus(SCTGeneric, 0x11).DNR()
	SGLOffsetInvalid         = MakeStatus(SCTGeneric, 0x16).DNR()
	LBAOutOfRange            = MakeStatus(SCTGeneric, 0x80).DNR()
	CapacityExceeded         = MakeStatus(SCTGeneric, 0x81).DNR()
	NamespaceNotReady        = MakeStatus(SCTGeneric, 0x82)
	// TransientTransportError fails a command whose data arrived damaged
	// (a data digest mismatch on NVMe/TCP: TP 8000, 3.6.2.x); retrying may
	// succeed.
	TransientTransportError = MakeStatus(SCTGeneric, 0x22)
)

// Command specific statuses (Figure 103, and NVMe-oF 1.1 Figure 21 for Connect).
var (
	InvalidQueueIdentifier = MakeStatus(SCTCommandSpecific, 0x01).DNR()
	InvalidQueueSize       = MakeStatus(SCTCommandSpecific, 0x02).DNR()
	AsyncEventLimit        = MakeStatus(SCTCommandSpecific, 0x05).DNR()
	InvalidLogPage         = MakeStatus(SCTCommandSpecific, 0x09).DNR()
	FeatureNotSaveable     = MakeStatus(SCTCommandSpecific, 0x0d).DNR()
	FeatureNotChangeable   = MakeStatus(SCTCommandSpecific, 0x0e).DNR()
	ConnectIncompatible    = MakeStatus(SCTCommandSpecific, 0x80).DNR()
	ConnectBusy            = MakeStatus(SCTCommandSpecific, 0x81)
	ConnectInvalidParam    = MakeStatus(SCTCommandSpecific, 0x82).DNR()
	ConnectRestartDisc     = MakeStatus(SCTCommandSpecific, 0x83).DNR()
	ConnectInvalidHost     = MakeStatus(SCTCommandSpecific, 0x84).DNR()
)

// Media and data integrity statuses (Figure 104).
var (
	WriteFault      = MakeStatus(SCTMediaError, 0x80)
	UnrecoveredRead = MakeStatus(SCTMediaError, 0x81)
	CompareFailure  = MakeStatus(SCTMediaError, 0x85).DNR()
	AccessDenied    = MakeStatus(SCTMediaError, 0x86).DNR()
)

// DNR returns s with Do Not Retry set: the same command would fail again.
func (s Status) DNR() Status { return s | statusDNR }

// Type returns the status code type.
func (s Status) Type() uint8 { return uint8(s>>8) & 7 }

// Code returns the status code.
func (s Status) Code() uint8 { return uint8(s) }

// OK reports success.
func (s Status) OK() bool { return s&0x7ff == 0 }

// DoNotRetry reports the DNR bit.
func (s Status) DoNotRetry() bool { return s&statusDNR != 0 }

var statusNames = map[Status]string{
	Success: "success", InvalidOpcode: "invalid opcode", InvalidField: "invalid field in command",
	CommandIDConflict: "command ID conflict", DataTransferError: "data transfer error",
	InternalError: "internal error", AbortRequested: "command abort requested",
	AbortSQDeleted: "aborted: SQ deleted", InvalidNamespace: "invalid namespace or format",
	CommandSequenceError: "command sequence error", InvalidSGLSegment: "invalid SGL segment descriptor",
	InvalidSGLCount: "invalid number of SGL descriptors", DataSGLLengthInvalid: "data SGL length invalid",
	SGLDescriptorTypeInvalid: "SGL descriptor type invalid", SGLOffsetInvalid: "SGL offset invalid",
	LBAOutOfRange: "LBA out of range", CapacityExceeded: "capacity exceeded",
	NamespaceNotReady: "namespace not ready", InvalidQueueIdentifier: "invalid queue identifier",
	InvalidQueueSize: "invalid queue size", AsyncEventLimit: "asynchronous event request limit exceeded",
	InvalidLogPage: "invalid log page", FeatureNotSaveable: "feature identifier not saveable",
	FeatureNotChangeable: "feature not changeable", ConnectIncompatible: "connect: incompatible format",
	ConnectBusy: "connect: controller busy", ConnectInvalidParam: "connect: invalid parameters",
	ConnectRestartDisc: "connect: restart discovery", ConnectInvalidHost: "connect: invalid host",
	WriteFault: "write fault", UnrecoveredRead: "unrecovered read error", CompareFailure: "compare failure",
	AccessDenied: "access denied", TransientTransportError: "transient transport error",
}

// Kind returns s without its Do Not Retry and More bits: what went wrong,
// not what to do about it.
func (s Status) Kind() Status { return s & 0x7ff }

// Name names the status's kind ("LBA out of range"), with no retry advice:
// a stable label for counting failures.
func (s Status) Name() string {
	if n, ok := statusNames[s.Kind()]; ok {
		return n
	}
	if n, ok := statusNames[s.Kind()|statusDNR]; ok {
		return n
	}
	return fmt.Sprintf("sct=%d sc=%#02x", s.Type(), s.Code())
}

func (s Status) String() string {
	if n, ok := statusNames[s&^statusMore]; ok {
		return n
	}
	if n, ok := statusNames[(s&^statusMore)^statusDNR]; ok {
		if s.DoNotRetry() {
			return n + " (dnr)"
		}
		return n + " (retryable)"
	}
	return fmt.Sprintf("status(sct=%d sc=%#02x dnr=%t)", s.Type(), s.Code(), s.DoNotRetry())
}

// Error makes a failed status an error.
func (s Status) Error() string { return "nvme: " + s.String() }
