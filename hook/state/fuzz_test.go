package state

import (
	"encoding/json"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the record parser: /run/gre-hook may
// hold a truncated or hand-edited file. No input may panic; what it
// accepts must round-trip.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"underlay":"eth1","tunnels":[{"name":"gre-site2","pin":{"dst":"203.0.113.1/32","gw":"198.51.100.254","dev":"eth1"},"defaults":[{"dst":"0.0.0.0/0","gw":"10.0.0.2","dev":"gre-site2"}],"replaced":[{"dst":"0.0.0.0/0","gw":"198.51.100.254","dev":"eth1","protocol":4}],"mss":[4,6],"down_command":["/bin/true"]}]}`))
	f.Add([]byte(`{"version":1,"underlay":"eth1","tunnels":[]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"underlay":"eth1","tunnels":[{"name":"a","mss":[5]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("accepted record does not encode: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("accepted record does not round-trip: %v\n%s", err, out)
		}
	})
}
