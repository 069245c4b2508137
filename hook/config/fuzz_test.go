package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the config parser and validator. No
// input may panic, and every rejection must say where and what.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"../../configs/site1.toml", "../../configs/site2.toml"} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("[[tunnel]]\nname = \"a\"\nunderlay = \"eth1\"\nremote = \"203.0.113.1\"\nkey = 1\nmss = 1400\naddress = [\"10.0.0.1/30\", \"fd00::1/127\"]\n[[tunnel.route]]\nto = \"192.168.2.0/24\"\n"))
	f.Add([]byte("[[tunnel]]\nname = \"x\"\nmode = \"ip6gre\"\nremote = \"2001:db8::1\"\ndefault_route = true\npeer = [\"10.0.0.2\"]\n"))
	f.Add([]byte("x = [1, \"a\"]\n[[tunnel.route]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, errs := Parse("f.toml", data)
		// The checks across tunnels take every tunnel, valid or not, and
		// must not panic on what is left of an invalid one.
		parseAll([]string{"f.toml"}, [][]byte{data}, nil)
		for _, err := range errs {
			msg := err.Error()
			if !strings.HasPrefix(msg, "f.toml") || len(msg) < len("f.toml: x") {
				t.Fatalf("error does not name the file or say what: %q", msg)
			}
		}
		if len(errs) == 0 {
			// What validates must survive the cross-file checks and give
			// every tunnel a usable name, and a remote that is either an
			// address or a name to look up, never both or neither.
			for _, tn := range ts {
				named := tn.RemoteName != "" && ValidHostName(tn.RemoteName) == ""
				if ValidIfName(tn.Name) != "" || tn.Remote.IsValid() == named {
					t.Fatalf("accepted an invalid tunnel: %+v", tn)
				}
			}
		}
	})
}
