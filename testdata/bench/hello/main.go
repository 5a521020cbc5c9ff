// Command hello is the floor of the status benchmark: the cheapest Go
// program there is, exec'd as many times as there are packs.
package main

import "fmt"

func main() { fmt.Println("hello, world") }
