package cli

import "testing"

func TestEnsurePath(t *testing.T) {
	for _, tc := range []struct{ have, want string }{
		{"", DefaultPath},
		{"/opt/bin", "/opt/bin"},
	} {
		env := map[string]string{"PATH": tc.have}
		err := EnsurePath(func(k string) string { return env[k] },
			func(k, v string) error { env[k] = v; return nil })
		if err != nil || env["PATH"] != tc.want {
			t.Errorf("PATH %q: got %q, %v; want %q", tc.have, env["PATH"], err, tc.want)
		}
	}
}
