package fleet

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// MaxHostID is the longest host id: a machine-id is 32, most host names
// are shorter than this.
const MaxHostID = 64

// ValidateHostID says what is wrong with a host id, if anything. A host id
// is 1 to 64 ASCII letters, digits, '.', '_' and '-', beginning with a
// letter or a digit: never a '/', which would put its keys inside another
// host's, nor a control character or a space.
func ValidateHostID(id string) error {
	switch {
	case id == "":
		return errors.New("a host id cannot be empty")
	case len(id) > MaxHostID:
		return fmt.Errorf("host id %q is longer than %d characters", id, MaxHostID)
	case !isAlnum(id[0]):
		return fmt.Errorf("host id %q must begin with a letter or a digit", id)
	}
	for _, r := range id {
		if r >= 0x80 || !isAlnum(byte(r)) && r != '.' && r != '_' && r != '-' {
			return fmt.Errorf("host id %q has %q: only letters, digits, '.', '_' and '-' may be used", id, string(r))
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// HostID is --host-id, else /etc/machine-id, else the host name, once
// checked by ValidateHostID.
func HostID(flag string) (string, error) {
	if flag != "" {
		return flag, ValidateHostID(flag)
	}
	if b, err := os.ReadFile("/etc/machine-id"); err == nil && strings.TrimSpace(string(b)) != "" {
		id := strings.TrimSpace(string(b))
		if err := ValidateHostID(id); err != nil {
			return "", fmt.Errorf("/etc/machine-id cannot be this host's id (%v): give --host-id", err)
		}
		return id, nil
	}
	h, _ := os.Hostname()
	if err := ValidateHostID(h); err != nil {
		return "", fmt.Errorf("the host name cannot be this host's id (%v): give --host-id", err)
	}
	return h, nil
}
