package main

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// readmeBuild returns the build command of the README's Install section: the
// line in it that starts "CGO_ENABLED=0 go build".
func readmeBuild(t *testing.T) string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "## Install":
			in = true
		case in && strings.HasPrefix(line, "## "):
			t.Fatal("README.md: no \"CGO_ENABLED=0 go build\" line in the Install section")
		case in && strings.HasPrefix(line, "CGO_ENABLED=0 go build "):
			return line
		}
	}
	t.Fatal("README.md: no Install section")
	return ""
}

// The README's own build command gives a static binary: no PT_INTERP,
// so no dynamic loader and no libc. The command is run as written, from
// the top of the tree, but for its -o, which goes to a temporary
// directory rather than into the tree.
func TestReadmeBuildIsStatic(t *testing.T) {
	cmdline := readmeBuild(t)
	words := strings.Fields(cmdline)
	var env []string
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env, words = append(env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("README build command %q is not a go build", cmdline)
	}
	out := filepath.Join(t.TempDir(), "gre-hook")
	seenO := false
	for i := range words {
		if words[i] == "-o" && i+1 < len(words) {
			words[i+1], seenO = out, true
		}
	}
	if !seenO {
		t.Fatalf("README build command %q has no -o", cmdline)
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), words[1:]...)
	cmd.Dir = "../.."
	// The README's environment on top of this one, whatever this one
	// says of cgo.
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: the binary has a PT_INTERP program header: it is dynamically linked", cmdline)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s: the binary needs %v", cmdline, libs)
	}
	if b, err := exec.Command(out, "--version").CombinedOutput(); err != nil || !strings.HasPrefix(string(b), "gre-hook dev") {
		t.Errorf("the built binary: --version printed %q (%v)", b, err)
	}
}
