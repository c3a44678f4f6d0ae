package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type initOptions struct {
	g         *globals
	group     string
	reserve   bool
	unreserve bool
}

func newInitCmd(g *globals) *cobra.Command {
	o := &initOptions{g: g}
	c := &cobra.Command{
		Use:   "init [--group NAME] [--reserve | --unreserve]",
		Short: "Set up the host registry (/var/lib/gracectl) for every user, as root",
		Long: `Set up the host registry, /var/lib/gracectl (or --root DIR): its folders, the
registry file and its lock. With --group NAME the folders become root:NAME with
the setgid bit and the files group-writable, so the members of NAME share one
registry without sudo; the lock file stays unreadable to everyone else, so no
other user can hold the registry up. It may be run again; it says what it
created on stderr. The systemd unit in docs/systemd uses the same folder.

--reserve also adds the managed range (--range) to the kernel's reserved
ports, net.ipv4.ip_local_reserved_ports, of this network namespace, so that
no outgoing connection and no bind to port 0 takes a managed port: the list
is read, the range merged into it and the list written back, every other
entry kept. A range that overlaps the kernel's ephemeral range is refused.
--unreserve takes the managed range's ports out of the list again, and
only those; it changes nothing else (no registry is set up). Both need
root; the setting lasts until reboot (the systemd unit reserves at each
start). 'gracectl status' and 'check' say whether the range is reserved.` + exitHelp(writerExits, nil),
		Example: `  sudo gracectl init --group gracectl
  sudo usermod -aG gracectl alice
  sudo gracectl init --reserve          # net.ipv4.ip_local_reserved_ports gains 8000-8100`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.reserve && o.unreserve {
				return usageErrorf("give --reserve or --unreserve, not both")
			}
			if o.unreserve && o.group != "" {
				return usageErrorf("--unreserve only changes the kernel's reserved ports; give --group without it")
			}
			if o.unreserve {
				return runReserve(o, false)
			}
			if o.reserve {
				if err := checkReserveRange(o.g); err != nil {
					return err // before the registry is set up
				}
			}
			if err := runInit(o); err != nil {
				return err
			}
			if o.reserve {
				return runReserve(o, true)
			}
			return nil
		},
	}
	c.Flags().StringVar(&o.group, "group", "", "the group whose members share the registry")
	c.Flags().BoolVar(&o.reserve, "reserve", false, "add the managed range to the kernel's reserved ports (net.ipv4.ip_local_reserved_ports), keeping every other entry")
	c.Flags().BoolVar(&o.unreserve, "unreserve", false, "take the managed range's ports out of the kernel's reserved ports, and nothing else")
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
			var ge user.UnknownGroupError
			if errors.As(err, &ge) {
				return &exitError{code: exitFailure, err: fmt.Errorf("group %s does not exist", registry.Quote(o.group)),
					hint: fmt.Sprintf("create it first (sudo groupadd %s), then add its members (sudo usermod -aG %s USER), and run init again", o.group, o.group)}
			}
			return fmt.Errorf("cannot look up group %s: %w", registry.Quote(o.group), err)
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

// runReserve adds the managed range to the kernel's reserved ports (add) or
// takes its ports out of them.
func runReserve(o *initOptions, add bool) error {
	rg, err := o.g.portRange()
	if err != nil {
		return err
	}
	if add {
		if err := checkReserveRange(o.g); err != nil {
			return err
		}
	}
	span := probe.PortSpan{Lo: rg.Start, Hi: rg.End}
	change := probe.PortList.Remove
	if add {
		change = probe.PortList.Add
	}
	before, after, err := probe.ChangeReservedPorts(func(l probe.PortList) probe.PortList { return change(l, span) })
	if err != nil {
		return reserveError(err)
	}
	switch {
	case before.String() == after.String() && add:
		fmt.Fprintf(o.g.stderr, "gracectl: range %s was already reserved in net.ipv4.ip_local_reserved_ports (%s)\n", rg, orDash(after.String()))
	case before.String() == after.String():
		fmt.Fprintf(o.g.stderr, "gracectl: no port of range %s was reserved in net.ipv4.ip_local_reserved_ports (%s)\n", rg, orDash(after.String()))
	default:
		fmt.Fprintf(o.g.stderr, "gracectl: net.ipv4.ip_local_reserved_ports is now %s (was %s)\n", orDash(after.String()), orDash(before.String()))
	}
	return nil
}

// checkReserveRange refuses to reserve a range that overlaps the
// ephemeral range, as allocate refuses to allocate from one.
func checkReserveRange(g *globals) error {
	rg, err := g.portRange()
	if err != nil {
		return err
	}
	if err := registry.CheckRange(rg); err != nil {
		return &usageError{msg: err.Error(), hint: "choose a --range below the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range)"}
	}
	return nil
}

// reserveError says in a sentence why the reserved ports could not be
// changed.
func reserveError(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("only root may change the kernel's reserved ports (net.ipv4.ip_local_reserved_ports): run gracectl init --reserve as root")
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("this kernel has no reserved ports list (%s)", probe.ReservedPortsFile)
	case errors.Is(err, probe.ErrReservedChanged):
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("cannot change the kernel's reserved ports (net.ipv4.ip_local_reserved_ports): %v", err)
}
