// Command hello is the baseline of `gracectl --version` in startup.py: a Go
// program that prints one line, built static like gracectl. What it takes
// is the Go runtime's own start and exit on this machine.
package main

import "fmt"

func main() { fmt.Println("hello, world") }
