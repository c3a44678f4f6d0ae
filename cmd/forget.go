package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newForgetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "forget SERVICE",
		Short: "Drop the port remembered for a service",
		Long: `Drop the port gracectl remembers for SERVICE (and for each of its port
names), so that its next allocation starts from the range start like a new
service's, and other services may take that port freely.` + exitHelp(writerExits, nil),
		Example: `  gracectl forget grace_backend`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("forget takes one service name, got %d arguments", len(args))
			}
			if err := g.rootMissing(); err != nil {
				return err
			}
			n, err := g.store().Forget(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if n == 0 {
				fmt.Fprintf(g.stderr, "gracectl: no port is remembered for %q\n", escape(args[0]))
				return nil
			}
			fmt.Fprintf(g.stderr, "gracectl: forgot the port of %q\n", escape(args[0]))
			return nil
		},
	}
}
