// Command natsdev runs a nats-server with JetStream for the demo, or reads a
// stream back.
//
//	natsdev serve DIR PORT     serve on 127.0.0.1:PORT with its store in DIR until killed
//	natsdev count URL STREAM   print how many messages the stream holds, and the last one
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "natsdev:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: natsdev serve DIR PORT | natsdev count URL STREAM")
	}
	switch args[0] {
	case "serve":
		port, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: args[1], NoSigs: true})
		if err != nil {
			return err
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			return fmt.Errorf("not ready")
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		s.Shutdown()
		return nil
	case "count":
		nc, err := nats.Connect(args[1])
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, args[2])
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("stream %s holds %d messages on subjects %v\n", args[2], info.State.Msgs, info.Config.Subjects)
		if info.State.Msgs > 0 {
			m, err := st.GetMsg(ctx, info.State.LastSeq)
			if err != nil {
				return err
			}
			fmt.Printf("last: subject %s, Nats-Msg-Id %s\n", m.Subject, m.Header.Get(nats.MsgIdHdr))
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}
