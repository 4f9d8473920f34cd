package bdev

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Registry errors, matched with errors.Is.
var (
	ErrExists    = errors.New("bdev: a device with that name exists")
	ErrNotFound  = errors.New("bdev: no such device")
	ErrBadURI    = errors.New("bdev: bad device URI")
	ErrBadScheme = errors.New("bdev: unknown device URI scheme")
)

// Factory creates a device named name from a parsed URI of its scheme.
type Factory func(name string, uri *url.URL) (Device, error)

// Registry holds devices by name and creates them from URIs such as
// malloc:///?size=64MiB, null:///?size=1GiB or uring:///var/lib/strata/pool.img.
// It is safe for concurrent use.
type Registry struct {
	mu        sync.Mutex
	factories map[string]Factory
	devices   map[string]Device
}

// NewRegistry returns a registry creating devices of the given schemes.
func NewRegistry(factories map[string]Factory) *Registry {
	return &Registry{factories: factories, devices: make(map[string]Device)}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports whether name can name a device.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("bdev: invalid name %q: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Create makes a device from uri and registers it under name.
func (r *Registry) Create(name, uri string) (Device, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	u, err := ParseURI(uri)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadURI, uri, err)
	}
	f, ok := r.factories[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("%w %q in %q", ErrBadScheme, u.Scheme, uri)
	}
	r.mu.Lock()
	if _, dup := r.devices[name]; dup {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrExists, name)
	}
	r.devices[name] = nil // reserve the name while the device is made
	r.mu.Unlock()
	dev, err := f(name, u)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		delete(r.devices, name)
		return nil, fmt.Errorf("bdev %s: %w", name, err)
	}
	r.devices[name] = dev
	return dev, nil
}

// Get returns the device called name.
func (r *Registry) Get(name string) (Device, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.devices[name]; d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.devices))
	for n, d := range r.devices {
		if d != nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Delete closes the device called name and forgets it.
func (r *Registry) Delete(name string) error {
	r.mu.Lock()
	d := r.devices[name]
	if d == nil {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	delete(r.devices, name)
	r.mu.Unlock()
	return d.Close()
}

// ParseURI parses a device URI, scheme://authority/path?query. Unlike
// url.Parse it takes the authority as it is, so that a PCI address with
// its colons (pcie://0000:00:04.0) is a host, not a host and a bad port.
func ParseURI(uri string) (*url.URL, error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok || scheme == "" {
		return url.Parse(uri)
	}
	authority := rest
	tail := ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	for _, c := range authority {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".:-_[]", c)) {
			return nil, fmt.Errorf("device URI %q: character %q in %q", uri, c, authority)
		}
	}
	u, err := url.Parse(scheme + "://" + tail)
	if err != nil {
		return nil, err
	}
	u.Host = authority
	return u, nil
}
