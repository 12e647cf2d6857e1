// Package dockerlog reads a container's log stream as Docker's logs API
// returns it: multiplexed stdout/stderr frames for a container without a
// TTY, the raw byte stream for one with it. Kernels get a TTY as upstream's
// do; containers of older builds have none, so the form is told from the
// stream itself.
package dockerlog

import (
	"bytes"
	"errors"
	"io"

	"github.com/moby/moby/api/pkg/stdcopy"
)

// Copy writes the log in src to dst, stdout and stderr interleaved as they
// came.
func Copy(dst io.Writer, src io.Reader) error {
	var head [8]byte
	n, err := io.ReadFull(src, head[:])
	if n == 0 {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	rest := io.MultiReader(bytes.NewReader(head[:n]), src)
	// A frame header: stream 0-2, three zero bytes, a big-endian length.
	if n == len(head) && head[0] <= 2 && head[1] == 0 && head[2] == 0 && head[3] == 0 {
		_, err := stdcopy.StdCopy(dst, dst, rest)
		return err
	}
	_, err = io.Copy(dst, rest)
	return err
}
