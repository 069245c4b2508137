package config

import "testing"

// Every name the kernel, iptables or gre-hook itself would misread is
// refused, with the character and the reason.
func TestValidIfName(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"eth1", ""},
		{"gre-site2", ""},
		{"eth0.100", ""},
		{"br_lan", ""},
		{"abcdefghijklmno", ""},
		{"", "must not be empty"},
		{"abcdefghijklmnop", `"abcdefghijklmnop" is 16 bytes; Linux allows at most 15`},
		{".", `"." is not a valid interface name`},
		{"..", `".." is not a valid interface name`},
		{"gre+", `"gre+" contains '+', which iptables reads as a wildcard at the end of a name ("-o gre+" matches every interface whose name starts with "gre")`},
		{"gre+a", `"gre+a" contains '+', which iptables reads as a wildcard at the end of a name ("-o gre+" matches every interface whose name starts with "gre")`},
		{"eth*", `"eth*" contains '*', which nftables reads as a wildcard in interface names`},
		{`gre"a`, `"gre\"a" contains '"', which breaks reading gre-hook's rules back from iptables -S`},
		{"gre%d", `"gre%d" contains '%', which the kernel replaces with a number when it creates the link ("gre%d" becomes gre0, gre1, ...)`},
		{"!eth1", `"!eth1" contains '!', which iptables reads as negation`},
		{"a/b", `"a/b" contains '/', which Linux forbids in interface names`},
		{"eth0:1", `"eth0:1" contains ':', which Linux forbids in interface names`},
		{"a b", `"a b" contains a space, which Linux forbids in interface names`},
		{"a\tb", `"a\tb" contains '\t' (U+0009), which Linux forbids in interface names`},
		{"a\nb", `"a\nb" contains '\n' (U+000A), which Linux forbids in interface names`},
		{"a\x00b", `"a\x00b" contains '\x00' (U+0000), a control character, which garbles logs and iptables -S output`},
		{"a\x07b", `"a\ab" contains '\a' (U+0007), a control character, which garbles logs and iptables -S output`},
		{"a\x1bb", `"a\x1bb" contains '\x1b' (U+001B), a control character, which garbles logs and iptables -S output`},
		{"a\x7fb", `"a\x7fb" contains '\x7f' (U+007F), a control character, which garbles logs and iptables -S output`},
		{"a\u0085b", `"a\u0085b" contains '\u0085' (U+0085), a control character, which garbles logs and iptables -S output`},
		{"a\u00a0b", `"a\u00a0b" contains '\u00a0' (U+00A0), white space, which reads as a space in logs and commands`},
		{"a\u2003b", `"a\u2003b" contains '\u2003' (U+2003), white space, which reads as a space in logs and commands`},
		{"a\xffb", `"a\xffb" contains the byte 0xff, which is not UTF-8; gre-hook's logs, records and status --json need UTF-8`},
		// The first problem is named; fixing it shows the next.
		{"a+b%c", `"a+b%c" contains '+', which iptables reads as a wildcard at the end of a name ("-o gre+" matches every interface whose name starts with "gre")`},
	} {
		if got := ValidIfName(tc.name); got != tc.want {
			t.Errorf("ValidIfName(%q):\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// KernelIfName holds the kernel's rules only: what gre-hook refuses for
// its own reasons passes.
func TestKernelIfName(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"gre+", ""},
		{"gre%d", ""},
		{`a"b`, ""},
		{"a\x07b", ""},
		{"a\xffb", ""},
		{"a\u00a0b", ""},
		{"", "must not be empty"},
		{"abcdefghijklmnop", `"abcdefghijklmnop" is 16 bytes; Linux allows at most 15`},
		{"..", `".." is not a valid interface name`},
		{"a/b", `"a/b" contains '/', which Linux forbids in interface names`},
		{"eth0:1", `"eth0:1" contains ':', which Linux forbids in interface names`},
		{"a b", `"a b" contains a space, which Linux forbids in interface names`},
		{"a\rb", `"a\rb" contains '\r' (U+000D), which Linux forbids in interface names`},
	} {
		if got := KernelIfName(tc.name); got != tc.want {
			t.Errorf("KernelIfName(%q):\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
