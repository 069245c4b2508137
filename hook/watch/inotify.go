package watch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FollowDir signals on out, without blocking, whenever a record in dir is
// written or removed: ifup and ifdown save records by renaming a temporary
// file over them, and remove them. The watcher's own liveness file and
// temporary files do not count. It stops when ctx is done.
//
// The inotify descriptor is nonblocking and handed to Go's poller, so the
// reading goroutine sleeps in epoll and closing the file wakes it.
func FollowDir(ctx context.Context, dir string, out chan<- struct{}, log io.Writer) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state directory %s: %w", dir, err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("following %s: inotify: %w", dir, err)
	}
	const mask = unix.IN_CREATE | unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
		unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		unix.Close(fd)
		return fmt.Errorf("following %s: inotify: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			n, err := f.Read(buf)
			if err != nil {
				if ctx.Err() == nil {
					fmt.Fprintf(log, "gre-hook: watch: following %s stopped: %v; restart the watcher\n", dir, err)
				}
				return
			}
			if recordEvent(buf[:n], dir, log) {
				select {
				case out <- struct{}{}:
				default: // a reload is already due
				}
			}
		}
	}()
	return nil
}

// recordEvent reports whether a batch of inotify events touches a record.
func recordEvent(b []byte, dir string, log io.Writer) bool {
	any := false
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			break
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		b = b[end:]
		switch {
		case ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
			fmt.Fprintf(log, "gre-hook: watch: the state directory %s was removed or moved; records made from now on are not followed until the watcher restarts\n", dir)
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			any = true
		case isRecord(name):
			any = true
		}
	}
	return any
}

// isRecord reports whether a file name in the state directory is a record.
func isRecord(name string) bool {
	return strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, ".")
}
