package rtnl

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ModuleAvailable says why module name could not be loaded, or nil: it
// is loaded or built in (/sys/module), or modprobe would find it in this
// kernel's modules.dep or modules.builtin. It loads nothing, so status
// and dry runs can foresee a kernel without GRE.
func ModuleAvailable(name string) error {
	if _, err := os.Stat("/sys/module/" + name); err == nil {
		return nil
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil // cannot tell; the real up will
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		// Built-in ip_gre and ip6_gre have parameters, so they show in
		// /sys/module; without the directory modprobe has nothing.
		return fmt.Errorf("this kernel has no GRE support: module %s is not loaded, and there is no %s to load it from", name, dir)
	}
	for _, list := range []string{"modules.dep", "modules.builtin"} {
		found, err := listsModule(filepath.Join(dir, list), name)
		if err != nil {
			return nil // cannot tell
		}
		if found {
			return nil
		}
	}
	return fmt.Errorf("this kernel has no GRE support: module %s is neither loaded nor among %s's modules", name, dir)
}

// listsModule reports whether a modules.dep or modules.builtin file
// names module name (as .../name.ko, compressed or not, before any ':').
func listsModule(path, name string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	// modprobe treats - and _ in module names as one.
	want := strings.ReplaceAll(name, "-", "_")
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, ':'); i >= 0 {
			line = line[:i]
		}
		base := filepath.Base(line)
		if i := strings.Index(base, ".ko"); i >= 0 {
			base = base[:i]
		}
		if strings.ReplaceAll(base, "-", "_") == want {
			return true, nil
		}
	}
	return false, sc.Err()
}
