// Command baiagent is the Backend.AI compute-node agent.
package main

import (
	"os"

	"github.com/baiagent/baiagent/host/internal/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:], os.Stdout, os.Stderr))
}
