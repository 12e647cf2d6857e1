package dockerlog

import (
	"bytes"
	"testing"

	"github.com/moby/moby/api/pkg/stdcopy"
)

// Logs of containers with a TTY (kernels now, as upstream's
// agent/docker/agent.py makes them) are raw; those without one (older
// builds) are multiplexed.
func TestCopy(t *testing.T) {
	// One stdout frame: stream 1, three zero bytes, big-endian length.
	muxed := bytes.NewBuffer([]byte{byte(stdcopy.Stdout), 0, 0, 0, 0, 0, 0, 6})
	muxed.WriteString("hello\n")
	muxed.Write([]byte{byte(stdcopy.Stderr), 0, 0, 0, 0, 0, 0, 4})
	muxed.WriteString("oops")
	cases := []struct {
		description string
		in          []byte
		want        string
	}{
		{description: "multiplexed stdout and stderr", in: muxed.Bytes(), want: "hello\noops"},
		{description: "raw tty", in: []byte("hello from a tty\r\n"), want: "hello from a tty\r\n"},
		{description: "short raw", in: []byte("hi"), want: "hi"},
		{description: "empty", in: nil, want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.description, func(t *testing.T) {
			var out bytes.Buffer
			if err := Copy(&out, bytes.NewReader(tc.in)); err != nil || out.String() != tc.want {
				t.Fatalf("got %q, %v; want %q", out.String(), err, tc.want)
			}
		})
	}
}
