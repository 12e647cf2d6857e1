//go:build unix

package rocm

import "syscall"

// readSmall reads a small sysfs file with one open, one read and one close:
// a sysfs attribute is produced whole on the first read, and the metrics
// poll reads dozens of them, so os.File's extra fstat, poller registration
// and EOF read are worth skipping.
func readSmall(path string, buf []byte) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	for err == syscall.EINTR {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &pathError{path, err}
	}
	defer syscall.Close(fd)
	n, err := syscall.Read(fd, buf)
	for err == syscall.EINTR {
		n, err = syscall.Read(fd, buf)
	}
	if err != nil {
		return nil, &pathError{path, err}
	}
	return buf[:max(n, 0)], nil
}
