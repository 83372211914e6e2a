package main

import (
	"os"

	"github.com/imcloud/imcloud/cmd"
)

func main() { os.Exit(cmd.Execute()) }
