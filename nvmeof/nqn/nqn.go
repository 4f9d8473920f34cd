// Package nqn validates and makes NVMe Qualified Names (NVMe Base
// Specification 2.0, section 4.5): the names of subsystems and hosts.
//
// Two forms exist:
//
//	nqn.yyyy-mm.reverse.domain[:anything]          (the domain's owner names it)
//	nqn.2014-08.org.nvmexpress:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
//
// An NQN is at most 223 bytes of UTF-8 (the 256-byte fields that carry it
// are NUL-terminated).
package nqn

import (
	"errors"
	"fmt"
	"regexp"
	"unicode/utf8"
)

// MaxLen is the longest valid NQN in bytes.
const MaxLen = 223

// Discovery is the well-known NQN of discovery subsystems.
const Discovery = "nqn.2014-08.org.nvmexpress.discovery"

// uuidPrefix starts the UUID-based form.
const uuidPrefix = "nqn.2014-08.org.nvmexpress:uuid:"

// ErrInvalid matches every validation error.
var ErrInvalid = errors.New("nqn: invalid")

var (
	dateDomainRE = regexp.MustCompile(`^nqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:.*)?$`)
	uuidRE       = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Validate reports why s is not a valid NQN, or nil.
func Validate(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalid)
	case len(s) > MaxLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(s), MaxLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not UTF-8", ErrInvalid)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q holds a control character", ErrInvalid, s)
		}
	}
	if len(s) > len(uuidPrefix) && s[:len(uuidPrefix)] == uuidPrefix {
		if !uuidRE.MatchString(s[len(uuidPrefix):]) {
			return fmt.Errorf("%w: %q: the UUID form needs a UUID after %q", ErrInvalid, s, uuidPrefix)
		}
		return nil
	}
	if !dateDomainRE.MatchString(s) {
		return fmt.Errorf("%w: %q: want nqn.yyyy-mm.reverse.domain[:name] or %s<uuid>", ErrInvalid, s, uuidPrefix)
	}
	return nil
}

// FromUUID returns the UUID-based NQN of a 16-byte UUID.
func FromUUID(u [16]byte) string {
	return fmt.Sprintf("%s%x-%x-%x-%x-%x", uuidPrefix, u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
