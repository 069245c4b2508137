package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// gre-hook runs as root and the config names commands to run, so a config
// is read only if nobody but root could have written it or swapped it, as
// OpenSSH's safe_path and sudo judge: every directory from / down, every
// symlink on the way (and its target, likewise) and the file itself owned
// by root and writable by no group or other, the file checked on the
// descriptor it is read from. A directory of *.toml files is held to a
// file's rule. A sticky directory on the way (/tmp) may be writable by
// others if the entry the path goes through is root's, as nobody else can
// rename or remove it; not a directory whose files are read, where anyone
// could add one.

// trust is who may own config files, the directories above them, and the
// symlinks on the way to them.
type trust struct {
	// also is trusted besides root: 0 in a real run, the user running the
	// tests in a unit test.
	also uint32
	// what is checked, for messages: "" is a config, else e.g. "state
	// directory".
	what string
}

func (tr trust) trusted(uid uint32) bool { return uid == 0 || uid == tr.also }

// maxLinks bounds the symlinks followed for one path, as the kernel's
// ELOOP limit does.
const maxLinks = 40

// testHookOpen, when set, runs between resolving a config path and
// opening it, so a test can swap the file there.
var testHookOpen func(path string)

// refusal is the error for config path name: what (a directory, symlink,
// or the file itself, "it") is wrong as said, and the command that fixes it.
func (tr trust) refusal(name, what, wrong, fix string) error {
	kind := tr.what
	if kind == "" {
		kind = "config"
	}
	msg := fmt.Sprintf("refusing %s %s: %s %s", kind, name, what, wrong)
	if fix != "" {
		msg += "; fix with: " + fix
	}
	return Errors{fmt.Errorf("%s (tests: set GRE_HOOK_INSECURE_CONFIG=1)", msg)}
}

func stat(fi fs.FileInfo) (uid uint32, mode uint32) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Mode & 0o7777
	}
	// Not a Unix file system's answer: nobody's.
	return ^uint32(0), 0o777
}

// checkDir checks a directory on the way to config name.
func (tr trust) checkDir(name, dir string, fi fs.FileInfo) error {
	uid, mode := stat(fi)
	if !tr.trusted(uid) {
		return tr.refusal(name, "directory "+dir, fmt.Sprintf("is owned by uid %d, not root", uid), "chown root: "+dir)
	}
	if mode&0o022 != 0 && mode&0o1000 == 0 {
		return tr.refusal(name, "directory "+dir, fmt.Sprintf("is writable by group or others (mode %04o)", mode), "chmod go-w "+dir)
	}
	return nil
}

// checkOpened checks what was opened for config name at path real: the
// file itself, or a directory of *.toml files.
func (tr trust) checkOpened(name, real string, fi fs.FileInfo) error {
	what := "it"
	if abs, err := filepath.Abs(name); err != nil || abs != real {
		what = "its target " + real
	}
	uid, mode := stat(fi)
	switch {
	case !fi.Mode().IsRegular() && !fi.IsDir():
		return tr.refusal(name, what, "is not a regular file", "")
	case !tr.trusted(uid):
		return tr.refusal(name, what, fmt.Sprintf("is owned by uid %d, not root", uid), "chown root: "+real)
	case mode&0o022 != 0 && fi.IsDir():
		return tr.refusal(name, what, fmt.Sprintf("is writable by group or others (mode %04o), so others could add files to it, sticky bit or not", mode), "chmod go-w "+real)
	case mode&0o022 != 0:
		return tr.refusal(name, what, fmt.Sprintf("is writable by group or others (mode %04o)", mode), "chmod go-w "+real)
	}
	return nil
}

// resolve returns the real path of config name, with every symlink
// resolved, having checked every directory it passes through and every
// symlink it follows. What the path finally names is not checked here:
// open checks it on the descriptor it reads.
func (tr trust) resolve(name string) (string, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return "", err
	}
	root, err := os.Lstat("/")
	if err != nil {
		return "", err
	}
	if err := tr.checkDir(name, "/", root); err != nil {
		return "", err
	}
	cur, todo, links := "/", components(abs), 0
	for len(todo) > 0 {
		elem := todo[0]
		todo = todo[1:]
		if elem == ".." {
			// cur holds no symlinks, so its parent is the lexical one,
			// and was checked on the way down.
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, elem)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if uid, _ := stat(fi); !tr.trusted(uid) {
				return "", tr.refusal(name, "symlink "+next, fmt.Sprintf("is owned by uid %d, not root", uid), "chown -h root: "+next)
			}
			if links++; links > maxLinks {
				return "", &fs.PathError{Op: "open", Path: name, Err: syscall.ELOOP}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			todo = append(components(target), todo...)
		case len(todo) == 0:
			cur = next
		case fi.IsDir():
			if err := tr.checkDir(name, next, fi); err != nil {
				return "", err
			}
			cur = next
		default:
			return "", &fs.PathError{Op: "open", Path: name, Err: syscall.ENOTDIR}
		}
	}
	return cur, nil
}

func components(path string) []string {
	var out []string
	for _, c := range strings.Split(path, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// open opens config name, a file or a directory of *.toml files, once:
// it resolves and checks the path, opens the real path without following
// a symlink, and checks what it opened on the descriptor, which the
// caller then reads. Nothing can be swapped in between.
func (tr trust) open(name string) (*os.File, error) {
	real, err := tr.resolve(name)
	if err != nil {
		return nil, err
	}
	if testHookOpen != nil {
		testHookOpen(real)
	}
	// O_NONBLOCK: a FIFO must not hang the open; it is refused below.
	// Then blocking again, before the fd becomes a File: a regular file's
	// reads never wait, and a non-blocking fd would start the runtime's
	// poller (an epoll set and an eventfd) in a run that needs none.
	fd, err := syscall.Open(real, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: real, Err: err}
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: real, Err: err}
	}
	f := os.NewFile(uintptr(fd), real)
	fi, err := f.Stat()
	if err == nil {
		err = tr.checkOpened(name, real, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openAsIs opens config name with no checks, for GRE_HOOK_INSECURE_CONFIG;
// but with O_NONBLOCK, so that a FIFO does not hang the open (read
// refuses it).
func openAsIs(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// TrustedDir checks a directory gre-hook reads and writes as root, such as
// the state directory, as it checks config: every directory and symlink on
// the way is root's and not writable by others (sticky ones excepted),
// and the directory itself is root's and not writable by group or others,
// sticky or not. A directory that does not exist yet is checked as the
// nearest one above it that does, since gre-hook then makes the rest
// itself, root's and private.
func TrustedDir(dir, what string) error {
	tr := trust{what: what}
	for {
		_, err := os.Lstat(dir)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(dir) == dir {
			return err
		}
		dir = filepath.Dir(dir)
	}
	f, err := tr.open(dir)
	if err != nil {
		return err
	}
	f.Close()
	return nil
}
