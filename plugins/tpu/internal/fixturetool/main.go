// Command fixturetool unpacks a testdata sysfs archive into a directory, so
// a dev agent config can point the plugin's sysfs-root and dev-root at it:
//
//	go run ./internal/fixturetool testdata/tpu-v4-4chip.txtar /tmp/tpu-v4
package main

import (
	"fmt"
	"os"

	"github.com/baiagent/baiagent/plugins/tpu/internal/sysfsfixture"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: fixturetool ARCHIVE DIR")
		os.Exit(2)
	}
	if err := os.MkdirAll(os.Args[2], 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := sysfsfixture.Extract(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
