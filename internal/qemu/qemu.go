// Package qemu boots a throwaway Linux guest under QEMU and runs a shell
// script in it: the test bed for what this host's kernel cannot do (its
// kernel has no nvme-tcp or vfio modules). scripts/build-guest.sh builds the
// guest from Debian packages and documents what it holds.
//
// Inside the guest: busybox, nvme (nvme-cli), /sbin/mke2fs (call it by path:
// busybox sh prefers its own applets, and its mke2fs lacks ext4); modules nvme-tcp,
// nvme-fabrics, nvme, vfio, vfio-pci, vfio_iommu_type1; the share directory
// at /host (9p, read-write); address 10.0.2.15/24, and the host's 127.0.0.1
// reachable as 10.0.2.2 (QEMU user networking, about 20 MB/s: keep data to
// tens of MiB). QEMU runs with -accel tcg: KVM hangs on this machine.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/strata-storage/strata/internal/syncbuf"
)

// Config describes one guest run.
type Config struct {
	// Script is the shell script (busybox sh) the guest runs.
	Script string
	// ShareDir is shared read-write at /host; the script is written there.
	ShareDir string
	// MemoryMiB is the guest's memory (default 1024).
	MemoryMiB int
	// Timeout bounds the whole run, boot included (default 5 minutes).
	Timeout time.Duration
	// IOMMU adds an emulated Intel IOMMU (for VFIO).
	IOMMU bool
	// NVMeImage, when set, attaches an emulated NVMe controller backed by
	// this raw file, with serial NVMeSerial.
	NVMeImage, NVMeSerial string
	// Console receives the guest's serial console as it runs.
	Console io.Writer
}

// Result is what a run produced.
type Result struct {
	ExitCode int
	Console  string
}

// ErrNoExit reports a guest that ended without printing its exit marker
// (a crash, a hang killed by the timeout).
var ErrNoExit = errors.New("qemu: the guest ended without an exit code")

var exitRE = regexp.MustCompile(`@@GUEST-EXIT=(\d+)@@`)

// Image builds (or finds cached) the guest kernel and initramfs.
func Image(ctx context.Context) (kernel, initrd string, err error) {
	root, err := repoRoot()
	if err != nil {
		return "", "", err
	}
	out := filepath.Join(root, ".cache", "guest")
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "build-guest.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("qemu: build guest image: %w\n%s", err, b)
	}
	return filepath.Join(out, "vmlinuz"), filepath.Join(out, "initrd.gz"), nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "build-guest.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("qemu: no scripts/build-guest.sh above the working directory")
		}
		dir = parent
	}
}

// Run boots a guest, runs cfg.Script and returns its exit code. QEMU is
// killed and waited for whatever happens.
func Run(ctx context.Context, cfg Config) (Result, error) {
	kernel, initrd, err := Image(ctx)
	if err != nil {
		return Result{}, err
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 1024
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.ShareDir == "" {
		return Result{}, errors.New("qemu: Config.ShareDir is required")
	}
	const scriptName = "guest-script.sh"
	if err := os.WriteFile(filepath.Join(cfg.ShareDir, scriptName), []byte(cfg.Script), 0o755); err != nil {
		return Result{}, fmt.Errorf("qemu: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	appendArgs := "console=ttyS0 quiet panic=-1 guest_script=" + scriptName
	args := []string{
		"-accel", "tcg", "-machine", "q35", "-cpu", "max", "-m", strconv.Itoa(cfg.MemoryMiB), "-smp", "2",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=",
		"-virtfs", "local,path=" + cfg.ShareDir + ",mount_tag=host0,security_model=none,id=host0",
		"-kernel", kernel, "-initrd", initrd,
	}
	if cfg.IOMMU {
		args = append(args, "-device", "intel-iommu")
		appendArgs += " intel_iommu=on"
	}
	if cfg.NVMeImage != "" {
		serial := cfg.NVMeSerial
		if serial == "" {
			serial = "strata0"
		}
		args = append(args, "-drive", "file="+cfg.NVMeImage+",if=none,id=nv0,format=raw",
			"-device", "nvme,serial="+serial+",drive=nv0")
	}
	args = append(args, "-append", appendArgs)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var console syncbuf.Buffer
	w := io.Writer(&console)
	if cfg.Console != nil {
		w = io.MultiWriter(&console, cfg.Console)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	out := console.String()
	if m := exitRE.FindStringSubmatch(out); m != nil {
		code, _ := strconv.Atoi(m[1])
		return Result{ExitCode: code, Console: out}, nil
	}
	if ctx.Err() != nil {
		return Result{Console: out}, fmt.Errorf("%w: timed out after %v; console tail:\n%s", ErrNoExit, cfg.Timeout, tail(out, 40))
	}
	return Result{Console: out}, fmt.Errorf("%w (qemu: %v); console tail:\n%s", ErrNoExit, runErr, tail(out, 40))
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// LineLogger is a Config.Console that hands each non-empty line of the
// console to a log function, such as a test's Logf.
type LineLogger func(format string, args ...any)

func (l LineLogger) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\r\n"), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			l("%s", line)
		}
	}
	return len(p), nil
}
