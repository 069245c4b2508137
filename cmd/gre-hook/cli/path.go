package cli

// DefaultPath is the search path for iptables and modprobe when gre-hook
// is started with none: an nm-dispatcher activated over D-Bus without
// systemd passes an empty environment, and a teardown that cannot find
// iptables would leave its MSS rules behind.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// EnsurePath sets PATH to DefaultPath when it is unset or empty.
func EnsurePath(getenv func(string) string, setenv func(string, string) error) error {
	if getenv("PATH") != "" {
		return nil
	}
	return setenv("PATH", DefaultPath)
}
