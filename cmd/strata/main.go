// Command strata is the Strata storage daemon and its command-line client.
package main

import (
	"os"

	"github.com/strata-storage/strata/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
