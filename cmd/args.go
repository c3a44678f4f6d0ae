package cmd

import "github.com/gracectl/gracectl/registry"

// portArg reads the PORT argument of a command that takes exactly one
// (adopt, register, who, ...); anything else is a usage error.
func portArg(command string, args []string) (int, error) {
	if len(args) != 1 {
		return 0, usageErrorf("%s takes one port, got %d arguments", command, len(args))
	}
	return parsePortArg(args[0])
}

// parsePortArg reads a port given on the command line: a bad one is a
// usage error.
func parsePortArg(s string) (int, error) {
	p, err := registry.ParsePort(s)
	if err != nil {
		return 0, &usageError{msg: err.Error()}
	}
	return p, nil
}
