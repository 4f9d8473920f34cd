package pcie_test

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/strata-storage/strata/internal/qemu"
)

//go:embed testdata/vfio-bench.sh
var vfioBenchScript string

var (
	perfRE = regexp.MustCompile(`@@PERF (\w+) (\S+) (\{[^\n]*\})`)
	idleRE = regexp.MustCompile(`@@IDLE ([0-9.]+)`)
)

// BenchmarkVFIOvsKernelInQEMU runs the same loads in the QEMU guest
// through the guest kernel's nvme driver and through Strata's userspace
// driver on the same emulated controller, and reports the ratio of IOPS
// (userspace / kernel) per load. Under software emulation the absolute
// figures mean little; the ratio is the point. It also reports the CPU an
// idle daemon with a pcie:// pool uses (idle-%core). One iteration is one
// guest boot: run it with -benchtime 1x.
func BenchmarkVFIOvsKernelInQEMU(b *testing.B) {
	dir := b.TempDir()
	img := filepath.Join(dir, "nvme.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		b.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "strata"), "../../cmd/strata")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build strata: %v\n%s", err, out)
	}
	secs := os.Getenv("SECS")
	if secs == "" {
		secs = "5"
	}
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		res, err := qemu.Run(ctx, qemu.Config{
			Script: "SECS=" + secs + "\n" + vfioBenchScript, ShareDir: dir, IOMMU: true, NVMeImage: img,
			MemoryMiB: 1024, Timeout: 9 * time.Minute,
		})
		cancel()
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("guest: %v (exit %d)\n%s", err, res.ExitCode, res.Console)
		}
		iops := map[string]map[string]float64{}
		for _, m := range perfRE.FindAllStringSubmatch(res.Console, -1) {
			var r struct {
				IOPS  float64 `json:"iops"`
				P99Us float64 `json:"lat_p99_us"`
			}
			if err := json.Unmarshal([]byte(m[3]), &r); err != nil {
				b.Fatalf("%s: %v", m[0], err)
			}
			if iops[m[2]] == nil {
				iops[m[2]] = map[string]float64{}
			}
			iops[m[2]][m[1]] = r.IOPS
			b.Logf("%s %s: %.0f IOPS, p99 %.0f us", m[1], m[2], r.IOPS, r.P99Us)
		}
		if len(iops) != 2 {
			b.Fatalf("want two loads with both paths, got %v\n%s", iops, res.Console)
		}
		m := idleRE.FindStringSubmatch(res.Console)
		if m == nil {
			b.Fatalf("no idle measurement\n%s", res.Console)
		}
		idle, _ := strconv.ParseFloat(m[1], 64)
		b.Logf("idle daemon with a pcie:// pool: %.1f%% of a core", idle)
		b.ReportMetric(idle, "idle-%core")
		for load, by := range iops {
			if by["kernel"] == 0 || by["strata"] == 0 {
				b.Fatalf("%s: missing a path: %v", load, by)
			}
			b.ReportMetric(by["strata"]/by["kernel"], fmt.Sprintf("ratio-%s", load))
			b.ReportMetric(by["strata"], fmt.Sprintf("strata-IOPS-%s", load))
			b.ReportMetric(by["kernel"], fmt.Sprintf("kernel-IOPS-%s", load))
		}
	}
}
