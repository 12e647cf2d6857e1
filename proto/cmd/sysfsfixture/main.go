// Command sysfsfixture unpacks a plugin's testdata sysfs archive into a
// directory, so a dev agent config can point the plugin's sysfs-root and
// dev-root at it:
//
//	go run ./proto/cmd/sysfsfixture plugins/rocm/testdata/mi300x-8gpu-2numa.txtar /tmp/mi300x
package main

import (
	"fmt"
	"os"

	"github.com/baiagent/baiagent/proto/sdk/sysfsfixture"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: sysfsfixture ARCHIVE DIR")
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
