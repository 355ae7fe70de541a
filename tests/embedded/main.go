// embedded: nats-server 2.10.23 embedded in a Go program exactly as an
// application embeds it, for nats-accountd's config-mode test: the options
// come from a config file (server.ProcessConfigFile), the server is created
// once (server.NewServer), started once and never restarted. The application
// owns its signals (NoSigs), so nats-accountd can reach it only through the
// system account: $SYS.REQ.SERVER.<id>.RELOAD.
//
//	embedded CONFIG_FILE
//
// prints "ready <client URL> <server ID>" once it accepts connections, then
// runs until SIGTERM or SIGINT.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: embedded CONFIG_FILE")
		os.Exit(64)
	}
	opts, err := server.ProcessConfigFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "embedded:", err)
		os.Exit(78)
	}
	opts.NoSigs = true
	ns, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "embedded:", err)
		os.Exit(70)
	}
	ns.ConfigureLogger()
	go ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		fmt.Fprintln(os.Stderr, "embedded: the server is not ready after 20s")
		os.Exit(70)
	}
	fmt.Printf("ready %s %s\n", ns.ClientURL(), ns.ID())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	ns.Shutdown()
	ns.WaitForShutdown()
}
