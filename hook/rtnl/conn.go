package rtnl

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// conn is a blocking rtnetlink socket for the requests rtnl builds itself.
// recvfrom returns once the kernel has answered, with no trip through Go's
// poller and no lookup of the socket's own address per request, as
// netlink's Execute makes; and several requests can go out in one write
// (pipeline).
type conn struct {
	fd  int // -1 until the first request, and after a failure
	seq uint32
	buf []byte
}

// A request gets its answers within this time, or the run fails rather than
// hang. The kernel answers within the write that carries the request; an
// answer is lost only when the receive buffer overflows, and then the
// socket is closed, and the next request opens another (pipeline).
var connTimeout = unix.Timeval{Sec: 10}

// open makes the socket, when the first request needs it: a run that
// changes nothing through it (status, a dry run) never pays for it.
func (c *conn) open() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &connTimeout); err != nil {
			unix.Close(fd)
			return err
		}
	}
	// Room for the answers of a pipeline (pipelineMax requests); root
	// may pass the system's limit.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return err
	}
	c.fd = fd
	return nil
}

// close closes the socket, if it was opened; the next request opens a new
// one.
func (c *conn) close() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// Unanswered is the error of a request sent to the kernel whose answer
// never came back (the socket failed): the kernel may have made the
// change or refused it.
type Unanswered struct{ Err error }

func (u *Unanswered) Error() string {
	return fmt.Sprintf("%v (the request went out: the kernel may have made the change)", u.Err)
}

func (u *Unanswered) Unwrap() error { return u.Err }

// IsUnanswered reports whether err is, or wraps, an Unanswered.
func IsUnanswered(err error) bool {
	var u *Unanswered
	return errors.As(err, &u)
}

// do sends one request and waits for its acknowledgement.
func (c *conn) do(req *nl.NetlinkRequest) error {
	_, errs := c.pipeline(req)
	return errs[0]
}

// pipeline sends reqs in one write and reads the kernel's answers: for each
// request, the messages it got before its acknowledgement, and its error
// (nil when the kernel acknowledged it). The kernel handles the requests
// of one write in their order, each seeing the changes of those before
// it, and a request that fails does not stop those after it: the caller
// decides what each error means. When the socket itself fails, the
// requests it has no answer for get that error; once the write went out,
// as an Unanswered, since the kernel handled them (rtnetlink handles a
// write's requests before the write returns) and may have made them. The
// socket is closed, and the next request opens another, so that answers
// it lost or still holds cannot confuse it.
func (c *conn) pipeline(reqs ...*nl.NetlinkRequest) (answers [][][]byte, errs []error) {
	if c.buf == nil {
		// Answers other than a dump's are a few kilobytes at most.
		c.buf = make([]byte, 32<<10)
	}
	answers, errs = make([][][]byte, len(reqs)), make([]error, len(reqs))
	done := make([]bool, len(reqs))
	var out []byte
	first := c.seq + 1
	for _, r := range reqs {
		c.seq++
		r.Seq = c.seq
		r.Flags |= unix.NLM_F_ACK
		out = append(out, r.Serialize()...)
	}
	fail := func(err error) ([][][]byte, []error) {
		for i := range errs {
			if !done[i] {
				errs[i] = err
			}
		}
		c.close()
		return answers, errs
	}
	if c.fd < 0 {
		if err := c.open(); err != nil {
			return fail(fmt.Errorf("opening rtnetlink: %w", err))
		}
	}
	if err := unix.Sendto(c.fd, out, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail(fmt.Errorf("sending to the kernel: %w", err))
	}
	sent := fail
	fail = func(err error) ([][][]byte, []error) { return sent(&Unanswered{Err: err}) }
	for pending := len(reqs); pending > 0; {
		n, from, err := unix.Recvfrom(c.fd, c.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("reading the kernel's answers: %w", err))
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not from the kernel
		}
		msgs, err := syscall.ParseNetlinkMessage(c.buf[:n])
		if err != nil {
			return fail(fmt.Errorf("reading the kernel's answers: %w", err))
		}
		for _, m := range msgs {
			if m.Header.Seq < first || m.Header.Seq > c.seq {
				continue // an answer to an earlier request, given up on
			}
			i := m.Header.Seq - first
			if m.Header.Type != unix.NLMSG_ERROR {
				answers[i] = append(answers[i], append([]byte(nil), m.Data...))
				continue
			}
			if len(m.Data) < 4 {
				return fail(fmt.Errorf("reading the kernel's answers: a short error message"))
			}
			if e := int32(nl.NativeEndian().Uint32(m.Data)); e != 0 {
				errs[i] = syscall.Errno(-e)
			}
			if !done[i] {
				done[i] = true
				pending--
			}
		}
	}
	return answers, errs
}
