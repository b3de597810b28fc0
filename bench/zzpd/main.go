package main

import (
	"context"
	"fmt"
	"os"

	"github.com/ispmux/ispmux/lab"
)

func main() {
	t, err := lab.Up(context.Background(), lab.Options{ID: "pdx", ISPs: 1, Subscribers: 1, Generator: true, DHCP: true, KeaOpen: true})
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(t.StateDir)
}
