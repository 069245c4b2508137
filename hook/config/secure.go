package config

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// CheckSecure refuses config files, and the directories that hold them,
// that someone other than root could have written. gre-hook runs as root
// from ifupdown, and the config names commands to run.
func CheckSecure(explicit string, files []string) error {
	seen := map[string]bool{}
	var check []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			check = append(check, p)
		}
	}
	if explicit != "" {
		if st, err := os.Stat(explicit); err == nil && st.IsDir() {
			add(explicit)
		}
	} else if _, err := os.Stat(DefaultDir); err == nil {
		add(DefaultDir)
	}
	for _, f := range files {
		add(filepath.Dir(f))
		add(f)
	}
	for _, p := range check {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("checking config: %w", err)
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		if sys.Uid != 0 {
			return Errors{fmt.Errorf("refusing config %s: it is owned by uid %d, not root; fix with: chown root: %s (tests: set GRE_HOOK_INSECURE_CONFIG=1)", p, sys.Uid, p)}
		}
		// A sticky world-writable directory such as /tmp still lets others
		// add files, so it is refused too.
		if st.Mode().Perm()&0o022 != 0 {
			return Errors{fmt.Errorf("refusing config %s: it is writable by group or others (mode %04o); fix with: chmod go-w %s (tests: set GRE_HOOK_INSECURE_CONFIG=1)", p, st.Mode().Perm(), p)}
		}
	}
	return nil
}
