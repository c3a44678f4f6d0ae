// Command gracectl owns a TCP port range for every service on a host. See
// README.md.
package main

import (
	"os"

	"github.com/gracectl/gracectl/cmd"
)

func main() { os.Exit(cmd.Main()) }
