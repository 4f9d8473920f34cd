package api

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/engine"
)

// PoolRequest creates a pool: POST /v1/pools.
type PoolRequest struct {
	Name string `json:"name"`
	URI  string `json:"uri"`
	// Format is "extent" (the default) or "lvol" (a volume store).
	Format      string `json:"format,omitempty"`
	ClusterSize Size   `json:"cluster_size,omitempty"`
	// Import opens the volume store the device holds, with its volumes.
	Import bool `json:"import,omitempty"`
}

// VolumeRequest creates a volume: POST /v1/volumes.
type VolumeRequest struct {
	Name string `json:"name"`
	Pool string `json:"pool"`
	Size Size   `json:"size"`
	Thin bool   `json:"thin,omitempty"`
	// Snapshot makes the volume a thin clone of that snapshot (pool and
	// size then optional).
	Snapshot string `json:"snapshot,omitempty"`
}

// SnapshotRequest takes a snapshot: POST /v1/snapshots.
type SnapshotRequest struct {
	Volume string `json:"volume"`
	Name   string `json:"name"`
}

// CheckResponse is GET /v1/pools/{name}/check: every fault found (none:
// the pool checks).
type CheckResponse struct {
	Pool   string   `json:"pool"`
	Faults []string `json:"faults"`
}

// ResizeRequest grows a volume: POST /v1/volumes/{name}/resize.
type ResizeRequest struct {
	Size Size `json:"size"`
}

// ShareRequest shares a volume: POST /v1/shares. The share is named after
// the volume.
type ShareRequest struct {
	Volume       string   `json:"volume"`
	NQN          string   `json:"nqn"`
	Listeners    []string `json:"listeners"`
	Hosts        []string `json:"hosts"`
	AllowAnyHost bool     `json:"allow_any_host"`
}

// HostRequest records a host: POST /v1/hosts.
type HostRequest struct {
	Name string `json:"name"`
	NQN  string `json:"nqn"`
}

// Lists, as GET on a collection returns them.
type (
	PoolList struct {
		Pools []engine.Pool `json:"pools"`
	}
	VolumeList struct {
		Volumes []engine.Volume `json:"volumes"`
	}
	ShareList struct {
		Shares []engine.Share `json:"shares"`
	}
	HostList struct {
		Hosts []engine.Host `json:"hosts"`
	}
	SnapshotList struct {
		Snapshots []engine.Snapshot `json:"snapshots"`
	}
)

// StatusResponse is GET /v1/status.
type StatusResponse struct {
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	engine.Status
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Size is a byte count given as a JSON number or as a string with a unit
// ("512MiB", "10GB": see bdev.ParseSize).
type Size uint64

// UnmarshalJSON implements json.Unmarshaler.
func (s *Size) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		n, err := bdev.ParseSize(str)
		if err != nil {
			return err
		}
		*s = Size(n)
		return nil
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("size %s: want a byte count or a string such as \"512MiB\"", b)
	}
	*s = Size(n)
	return nil
}
