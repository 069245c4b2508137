package mss_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/gre-hook/gre-hook/hook/mss"
)

// FuzzSplit feeds arbitrary `iptables -S` lines to Split, and arbitrary
// argument lists (separated by NUL) through Join and back. No input may
// panic; Join then Split gives back the arguments exactly, whatever bytes
// they hold; and a split line, joined and split again, splits the same.
func FuzzSplit(f *testing.F) {
	f.Add(`-A GRE-HOOK -o gre-site2 -p tcp -m tcp --tcp-flags SYN,RST SYN -m comment --comment "gre-hook:eth1:gre-site2" -j TCPMSS --clamp-mss-to-pmtu`)
	f.Add(`-A GRE-HOOK -m comment --comment "say \"hi\" \\ it\'s" -j ACCEPT`)
	f.Add("-A\x00GRE-HOOK\x00--comment\x00with space\x00\x00a\tb")
	f.Add(`"unterminated \`)
	f.Add("caf\xc3\xa9 \xff\xfe \"\xc3\"")
	f.Fuzz(func(t *testing.T, s string) {
		fields := mss.Split(s)
		if again := mss.Split(mss.Join(fields)); !reflect.DeepEqual(again, fields) && !(len(again) == 0 && len(fields) == 0) {
			t.Fatalf("Split(%q) = %q, but Split(Join(that)) = %q", s, fields, again)
		}
		args := strings.Split(s, "\x00")
		if got := mss.Split(mss.Join(args)); !reflect.DeepEqual(got, args) {
			t.Fatalf("Split(Join(%q)) = %q", args, got)
		}
	})
}
