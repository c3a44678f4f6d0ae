package cmd

import (
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type initOptions struct {
	g     *globals
	group string
}

func newInitCmd(g *globals) *cobra.Command {
	o := &initOptions{g: g}
	c := &cobra.Command{
		Use:   "init [--group NAME]",
		Short: "Set up the host registry (/var/lib/gracectl) for every user, as root",
		Long: `Set up the host registry, /var/lib/gracectl (or --root DIR): its folders, the
registry file and its lock. With --group NAME the folders become root:NAME with
the setgid bit and the files group-writable, so the members of NAME share one
registry without sudo; the lock file stays unreadable to everyone else, so no
other user can hold the registry up. It may be run again; it says what it
created on stderr. The systemd unit in docs/systemd uses the same folder.` + exitHelp(writerExits, nil),
		Example: `  sudo gracectl init --group gracectl
  sudo usermod -aG gracectl alice`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runInit(o) },
	}
	c.Flags().StringVar(&o.group, "group", "", "the group whose members share the registry")
	return c
}

func runInit(o *initOptions) error {
	root := o.g.hostRoot
	if o.g.rootSource == registry.RootFlag || o.g.rootSource == registry.RootEnv {
		root = o.g.root
	} else if os.Geteuid() != 0 {
		return fmt.Errorf("gracectl init sets up the host registry %s for every user and must run as root (or give --root DIR for a folder of your own)", root)
	}
	gid := -1
	if o.group != "" {
		grp, err := user.LookupGroup(o.group)
		if err != nil {
			return usageErrorf("--group %q: %v", o.group, err)
		}
		if gid, err = strconv.Atoi(grp.Gid); err != nil {
			return err
		}
	}
	o.g.root = root
	s, err := registry.InitRoot(root, gid, o.g.lockTimeout, o.g.store().Notice)
	if err != nil {
		return fmt.Errorf("cannot set up %s: %w", root, err)
	}
	who := "its owner"
	if s.Shared() {
		who = "the group"
		if o.group != "" {
			who = "group " + o.group
		}
	}
	fmt.Fprintf(o.g.stderr, "gracectl: registry %s is ready; %s may change it\n", s.Path(), who)
	return nil
}
